package ctl

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/metricnames"
)

func TestRates(t *testing.T) {
	prev := bpf.Counters{"a": 10, "b": 100, "c": 5}
	cur := bpf.Counters{"a": 30, "b": 50, "c": 5, "d": 7}
	s := rates(prev, cur, 2*time.Second)
	want := map[bpf.Counter]float64{"a": 10, "b": 0, "c": 0, "d": 0}
	for k, v := range want {
		if s.PerSec[k] != v {
			t.Errorf("rate of %s = %v, want %v", k, s.PerSec[k], v)
		}
	}
	if s.Interval != 2 {
		t.Errorf("interval %v", s.Interval)
	}
}

func TestCounterOrder(t *testing.T) {
	c := bpf.Counters{"zz_new": 1, "bytes_redirected": 2, "aa_new": 3, "sockets_tagged": 4}
	got := counterOrder(c)
	if want := []bpf.Counter{"sockets_tagged", "bytes_redirected", "aa_new", "zz_new"}; !slices.Equal(got, want) {
		t.Errorf("order %q, want %q", got, want)
	}
}

func TestStatsOnce(t *testing.T) {
	eng := newFakeEngine()
	out := mustRun(t, eng, "", "stats")
	if !strings.Contains(out, "connections_accepted  3\n") || strings.Contains(out, "pairs recorded") {
		t.Errorf("stats:\n%s", out)
	}
	if out := mustRun(t, eng, "", "stats", "-o", "wide"); !strings.Contains(out,
		"connections_accepted  3      mesh_accel_connections_accepted_total  pairs recorded") {
		t.Errorf("stats -o wide:\n%s", out)
	}
	var s statsSample
	if err := json.Unmarshal([]byte(mustRun(t, eng, "", "stats", "-o", "json")), &s); err != nil {
		t.Fatal(err)
	}
	if s.Counters["bytes_redirected"] != 4096 || s.PerSec != nil {
		t.Errorf("stats JSON: %+v", s)
	}
}

// --watch prints rates every interval until interrupted; the interval may
// follow as an argument.
func TestStatsWatch(t *testing.T) {
	for _, args := range [][]string{{"--watch", "20ms"}, {"--watch=20ms"}} {
		eng := newFakeEngine()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for i := 0; ctx.Err() == nil; i++ {
				time.Sleep(5 * time.Millisecond)
				eng.mu.Lock()
				eng.counters["bytes_redirected"] += 1000
				eng.mu.Unlock()
				if i == 30 {
					cancel()
				}
			}
		}()
		r := runCtlContext(ctx, t, eng, "", append([]string{"stats", "-o", "json"}, args...)...)
		if r.code != ExitOK {
			t.Fatalf("%v: exit %d: %s", args, r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) < 2 {
			t.Fatalf("%v: %d samples: %q", args, len(lines), r.stdout)
		}
		// A tick late (a loaded machine) makes the next interval short,
		// possibly without a change: some sample has a rate, every one an
		// interval.
		moving := false
		for _, line := range lines {
			var s statsSample
			if err := json.Unmarshal([]byte(line), &s); err != nil {
				t.Fatal(err)
			}
			if s.Interval <= 0 {
				t.Errorf("%v: sample %+v", args, s)
			}
			moving = moving || s.PerSec["bytes_redirected"] > 0
		}
		if !moving {
			t.Errorf("%v: no sample with a rate: %s", args, r.stdout)
		}
	}
}

func TestRenderRates(t *testing.T) {
	var b strings.Builder
	s := statsSample{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Interval: 1,
		Counters: bpf.Counters{"bytes_redirected": 2048}, PerSec: map[bpf.Counter]float64{"bytes_redirected": 1024}}
	a := &app{cfg: &Config{Output: OutputTable}}
	if err := a.renderRates(&b, s); err != nil {
		t.Fatal(err)
	}
	want := "03:04:05 (rates over 1.0s)\nCOUNTER           TOTAL  PER SEC\nbytes_redirected  2048   1024.0\n\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// stats -o wide names the series of the installer's /metrics beside each
// counter, the reason label included, as package metricnames (the
// installer's definitions) says; "-" for a counter the installer does not
// export.
func TestStatsWideMetric(t *testing.T) {
	eng := newFakeEngine()
	eng.counters = bpf.Counters{}
	for i, name := range bpf.CounterNames() {
		eng.counters[name] = uint64(i)
	}
	eng.counters["zz_new"] = 1
	out := mustRun(t, eng, "", "stats", "-o", "wide")
	rows := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(line)
		rows[f[0]] = f
	}
	for _, tc := range []struct{ counter, series string }{
		{"connections_accepted", "mesh_accel_connections_accepted_total"},
		{"rejected_rules", `mesh_accel_connections_rejected_total{reason="rules"}`},
		{"flow_control_held", `mesh_accel_fallback_directions_total{reason="flow_control"}`},
		{"zz_new", "-"},
	} {
		if f := rows[tc.counter]; len(f) < 3 || f[2] != tc.series {
			t.Errorf("stats -o wide: row of %s is %q, want the metric %s", tc.counter, f, tc.series)
		}
	}
	for _, name := range bpf.CounterNames() {
		c, ok := metricnames.Of(name)
		if !ok {
			t.Errorf("engine counter %s has no metric in package metricnames", name)
			continue
		}
		if f := rows[string(name)]; len(f) < 3 || f[2] != c.Series() {
			t.Errorf("stats -o wide: row of %s is %q, want %s", name, f, c.Series())
		}
	}
	// The watch table has the same column.
	w := &strings.Builder{}
	a := &app{cfg: &Config{Output: OutputWide}}
	if err := a.renderRates(w, rates(eng.counters, eng.counters, time.Second)); err != nil ||
		!strings.Contains(w.String(), `mesh_accel_connections_rejected_total{reason="rules"}`) {
		t.Errorf("stats --watch -o wide: %v\n%s", err, w.String())
	}
}
