package ctltest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// toggles is the cycle of switch commands run against live traffic.
var toggles = [][]string{
	{"disable"}, {"enable"},
	{"disable", "--drain"}, {"enable"},
	{"disable", "--pod", "shop/a"}, {"enable", "--pod", "shop/a"},
	{"disable", "--pod", "shop/b", "--drain"}, {"enable", "--pod", "shop/b"},
	{"disable", "--pod", "shop/a", "--drain"}, {"disable", "--drain"}, {"enable", "--pod", "shop/a"}, {"enable"},
}

// Switching acceleration off and on, globally and per pod, with and
// without draining, while checksummed streams run (long echo and bulk
// streams, and short connections opened all the time) loses, duplicates
// and reorders no byte: every client verifies every byte it gets back.
func TestSwitchLiveTraffic(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	target := b.AppTarget(false)
	specs := []sim.ClientSpec{
		{Mode: sim.ModeEcho, Target: target, Streams: 4, Bytes: 48 << 20, MinWrite: 1, MaxWrite: 1 << 20},
		{Mode: sim.ModeBulk, Target: target, Streams: 2, Bytes: 64 << 20, MinWrite: 1, MaxWrite: 256 << 10, Seed: 9},
		{Mode: sim.ModeChurn, Target: target, Count: 300, Concurrency: 4},
	}
	stop := loopClients(a, specs)

	drained, commands := 0, 0
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
		for _, args := range toggles {
			var res struct{ Drained int }
			e.json(&res, args...)
			drained += res.Drained
			commands++
			time.Sleep(40 * time.Millisecond)
		}
	}
	runs, failures := stop()
	if len(failures) > 0 {
		t.Fatalf("%d client runs failed across %d switch commands:\n%s", len(failures), commands,
			strings.Join(failures, "\n"))
	}
	for _, spec := range specs {
		if runs[spec.Mode] == 0 {
			t.Errorf("no %s run completed", spec.Mode)
		}
	}
	if drained == 0 {
		t.Error("no pair was drained: the drains never met live accelerated connections")
	}
	c, err := e.node.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c["bytes_redirected"] == 0 || c["rejected_disabled"] == 0 {
		t.Errorf("traffic was never redirected, or never refused while off: %v", c)
	}
	t.Logf("%d switch commands, %d pair directions drained, client runs %v; counters %v", commands, drained, runs, c)
	e.waitNoConns()
	var st struct {
		Enabled bool
		Pods    []struct{ Enabled bool }
	}
	e.json(&st, "status")
	if !st.Enabled || len(st.Pods) != 2 || !st.Pods[0].Enabled || !st.Pods[1].Enabled {
		t.Errorf("switches after the last enable: %+v", st)
	}
}

// disable without --drain leaves live pairs accelerated and says so; with
// --drain it moves them all back.
func TestDisableDrainReport(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	wait := e.background(a, sim.ClientSpec{Mode: sim.ModeRR, Target: b.AppTarget(false), Duration: 2 * time.Second})
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if u, _ := e.node.Usage(); u.Directions == 6 {
			break
		}
	}
	out := e.ok("disable", "--pod", "shop/b")
	if !strings.Contains(out, "acceleration disabled for pod shop/b (uid "+e.uids["b"]+")") ||
		!strings.Contains(out, "4 pair directions stay accelerated") {
		t.Errorf("disable --pod shop/b:\n%s", out)
	}
	var res struct{ Drained, Remaining int }
	e.json(&res, "disable", "--drain")
	if res.Drained != 6 || res.Remaining != 0 {
		t.Errorf("disable --drain: %+v, want 6 drained, 0 remaining", res)
	}
	if r := wait(); !r.OK {
		t.Fatalf("rr client across the drain: %v", r.Errors)
	}
	e.ok("enable")
	e.ok("enable", "--pod", e.uids["b"]) // --pod takes a UID too
	if r := e.ctl("enable", "--pod", "shop/nosuch"); r.code != ctl.ExitError {
		t.Errorf("enable --pod shop/nosuch: exit %d", r.code)
	}
	var st struct{ Warnings []string }
	e.json(&st, "status")
	for _, w := range st.Warnings {
		if strings.Contains(w, "disabled") || strings.Contains(w, "switch is off") {
			t.Errorf("still disabled: %s", w)
		}
	}
}

// loopClients runs each spec in the pod again and again, concurrently,
// until stop is called; stop waits for the runs under way and returns how
// many of each mode passed every check, and what failed.
func loopClients(p *sim.Pod, specs []sim.ClientSpec) (stop func() (runs map[string]int, failures []string)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var mu sync.Mutex
	runs := map[string]int{}
	var failures []string
	for _, spec := range specs {
		wg.Go(func() {
			for ctx.Err() == nil {
				res, err := p.RunClient(context.Background(), spec)
				mu.Lock()
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case !res.OK:
					failures = append(failures, fmt.Sprintf("%s: %d errors, %d mismatches: %v", spec.Mode,
						res.ErrorCount, res.Mismatches, res.Errors))
				default:
					runs[spec.Mode]++
				}
				mu.Unlock()
			}
		})
	}
	return func() (map[string]int, []string) {
		cancel()
		wg.Wait()
		return runs, failures
	}
}
