//go:build meshbench

package bench

import (
	"path/filepath"
	"strings"
	"testing"
)

// The table leads with fortio's added latency, lists only the figures
// measured, and the chart is written for them.
func TestWriteTableLeadsWithFortio(t *testing.T) {
	res := map[Mode]Result{
		Direct:  {"fortio_p90_ms": 0.3, "fortio_cpu_pods_us_per_req": 60, "rr64_per_s": 15000},
		Sidecar: {"fortio_p90_ms": 1.1, "fortio_cpu_pods_us_per_req": 460, "rr64_per_s": 3000},
	}
	deriveFortio(res)
	var b strings.Builder
	if err := WriteTable(&b, &Results{Modes: res}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	i, j := strings.Index(out, "fortio 1000/s added P90 ms"), strings.Index(out, "Go rr 64 B /s")
	if i < 0 || j < 0 || i > j {
		t.Errorf("added P90 (at %d) does not lead Go rr (at %d):\n%s", i, j, out)
	}
	if strings.Contains(out, "sockperf") {
		t.Errorf("a figure not measured is in the table:\n%s", out)
	}
	if !strings.Contains(out, "usage_usec") || !strings.Contains(out, "/proc/stat") {
		t.Errorf("the table does not say where CPU comes from:\n%s", out)
	}
	if err := WriteChart(filepath.Join(t.TempDir(), "c.svg"), &Results{Modes: res}); err != nil {
		t.Error(err)
	}
}
