//go:build meshbench

package bench

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

const procStat = `cpu  163438 7 139195 359226 851 3 38007 220 50 0
cpu0 80136 0 69264 181565 219 0 19153 101 0 0
cpu1 83301 7 69931 177661 631 3 18853 118 50 0
intr 1 2 3
ctxt 123
`

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat(procStat)
	if err != nil {
		t.Fatal(err)
	}
	// user+nice+system+irq+softirq, at 100 ticks a second; not idle
	// (359226), iowait (851), steal (220) nor guest (50, inside user).
	if want := time.Duration(163438+7+139195+3+38007) * 10 * time.Millisecond; got != want {
		t.Errorf("busy %v, want %v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 x 3 4 5 6 7 8\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
}

func TestParseCgroupUsage(t *testing.T) {
	got, err := parseCgroupUsage("usage_usec 278555245\nuser_usec 79523314\nsystem_usec 199031930\nnice_usec 0\n")
	if err != nil || got != 278555245*time.Microsecond {
		t.Errorf("usage %v, %v; want 278.555245s", got, err)
	}
	for _, bad := range []string{"", "user_usec 5\n", "usage_usec -1\n"} {
		if _, err := parseCgroupUsage(bad); err == nil {
			t.Errorf("parseCgroupUsage(%q): no error", bad)
		}
	}
}

func TestReadCPU(t *testing.T) {
	dir := t.TempDir()
	for i, usage := range []string{"1000", "2500"} {
		d := filepath.Join(dir, string(rune('a'+i)))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "cpu.stat"), []byte("usage_usec "+usage+"\nuser_usec 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r, err := readCPU(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if r.pods != 3500*time.Microsecond || r.node <= 0 {
		t.Errorf("reading %+v, want pods 3.5ms and node busy time", r)
	}
	if _, err := readCPU(filepath.Join(dir, "missing")); err == nil {
		t.Error("readCPU of a missing cgroup: no error")
	}
}

func TestCPUPerUnit(t *testing.T) {
	before := cpuReading{node: 10 * time.Second, pods: 4 * time.Second}
	after := cpuReading{node: 10*time.Second + 600*time.Millisecond, pods: 4*time.Second + 460*time.Millisecond}
	use := after.since(before)
	r := Result{}
	use.record(r, "fortio", "req", 1000)
	if got := r["fortio_cpu_pods_us_per_req"]; math.Abs(got-460) > 1e-9 {
		t.Errorf("pods µs/req %v, want 460", got)
	}
	if got := r["fortio_cpu_node_us_per_req"]; math.Abs(got-600) > 1e-9 {
		t.Errorf("node µs/req %v, want 600", got)
	}
	use.record(r, "bulk", "MiB", 0) // no work: no figure, no division by zero
	if _, ok := r["bulk_cpu_pods_us_per_MiB"]; ok {
		t.Error("figure without work")
	}
	if f := cpuFigures("bulk", "MiB", "iperf3 1 stream"); f[0].Key != "bulk_cpu_pods_us_per_MiB" || !f[0].Lower ||
		f[1].Label != "iperf3 1 stream CPU µs/MiB node" {
		t.Errorf("cpuFigures: %+v", f)
	}
}
