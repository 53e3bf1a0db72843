//go:build meshbench

package bench

import (
	"encoding/json"
	"math"
	"path/filepath"
	"regexp"
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

// The spread is each figure's range over the rounds, the added latency
// derived per round from that round's direct mode; the table prints it as
// a share of the median and the JSON carries it.
func TestSpreadOverRounds(t *testing.T) {
	samples := map[Mode][]Result{
		Direct:  {{"fortio_p90_ms": 0.3}, {"fortio_p90_ms": 0.5}, {"fortio_p90_ms": 0.4}},
		Sidecar: {{"fortio_p90_ms": 2.3, keyFCHeld: 1}, {"fortio_p90_ms": 2.1, keyFCHeld: 2}, {"fortio_p90_ms": 2.6}},
	}
	sp := spreadOf(samples)
	if g := sp[Sidecar]["fortio_p90_ms"]; g != (Range{Min: 2.1, Max: 2.6}) {
		t.Errorf("sidecar P90 range %+v, want 2.1 to 2.6", g)
	}
	// Added per round: 2.0, 1.6, 2.2.
	g := sp[Sidecar]["fortio_added_p90_ms"]
	if math.Abs(g.Min-1.6) > 1e-9 || math.Abs(g.Max-2.2) > 1e-9 {
		t.Errorf("sidecar added P90 range %+v, want 1.6 to 2.2", g)
	}
	if _, ok := sp[Sidecar][keyFCHeld]; ok {
		t.Error("a count summed over rounds has a spread")
	}
	res := map[Mode]Result{Direct: median(samples[Direct]), Sidecar: median(samples[Sidecar])}
	deriveFortio(res)
	var b strings.Builder
	if err := WriteTable(&b, &Results{Modes: res, Spread: sp, Rounds: 3}); err != nil {
		t.Fatal(err)
	}
	// Sidecar's added P90: median 2.3-0.4 = 1.9, range 0.6: 32%.
	if !strings.Contains(b.String(), "spread over 3 rounds") || !regexp.MustCompile(`added P90 ms\s+\S+\s+32%`).MatchString(b.String()) {
		t.Errorf("the table lacks the added P90's spread of 32%%:\n%s", b.String())
	}
	if testing.Verbose() {
		t.Log(b.String())
	}
	js, err := json.Marshal(&Results{Modes: res, Spread: sp, Rounds: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"spread":{"modes":{`) || !strings.Contains(string(js), `"rounds":3`) {
		t.Errorf("the JSON lacks the spread: %s", js)
	}
}
