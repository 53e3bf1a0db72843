package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// directionsDuring runs a one-connection request/response client for a
// while and returns the largest snapshot of the recorded pair directions.
func (e *env) directionsDuring(p *sim.Pod, target string) []bpf.Direction {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan *sim.ClientResult, 1)
	errc := make(chan error, 1)
	go func() {
		res, err := p.RunClient(ctx, sim.ClientSpec{Mode: sim.ModeRR, Target: target, Duration: 1500 * time.Millisecond})
		if err != nil {
			errc <- err
			return
		}
		done <- res
	}()
	var best []bpf.Direction
	for {
		select {
		case err := <-errc:
			e.t.Fatal(err)
		case res := <-done:
			if !res.OK {
				e.t.Fatalf("rr client: %v", res.Errors)
			}
			e.waitNoConns()
			return best
		case <-time.After(50 * time.Millisecond):
			d, err := e.node.Directions()
			if err != nil {
				e.t.Fatal(err)
			}
			if len(d) > len(best) {
				best = d
			}
		}
	}
}

// hop finds the direction whose receiver listens on port (15001, 15006 or
// the app's 8080) or whose sender does, by connecting side.
func hop(ds []bpf.Direction, port uint16, toListener bool) *bpf.Direction {
	for i := range ds {
		d := &ds[i]
		if toListener && d.Connecting && d.To.Port() == port {
			return d
		}
		if !toListener && !d.Connecting && d.From.Port() == port {
			return d
		}
	}
	return nil
}

// What the annotation alone sets up: the default rules, apps not declared
// recvmsg readers. The app <-> sidecar hops could be accelerated one way
// only, which costs more than it saves: they are left to the stack, and the
// app's connecting socket joins no socket map at all. The sidecar ->
// sidecar hop on 15006 is excluded by the rules. Nothing is redirected and
// every byte arrives.
func TestAnnotationDefaultsLeaveOneWayHops(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &annotationCfg)
	b := e.pod("b", true, &annotationCfg)
	if ds := e.directionsDuring(a, b.AppTarget(false)); len(ds) != 0 {
		t.Errorf("directions paired: %+v", ds)
	}
	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, MaxWrite: 64 << 10})
	want(t, c, map[string]uint64{
		"connections_seen":           3,
		"connecting_registered":      3, // each connecting socket, in no socket map when untrusted
		"connections_accepted":       0,
		"rejected_rules":             1,
		"rejected_untrusted_readers": 2,
		"bytes_redirected":           0,
	})
	e.waitNoConns()
}

// The sidecar-hops profile with apps not declared recvmsg readers: the
// sidecar -> sidecar hop to 15006 is paired both ways (both readers are the
// sidecar), the app hops are left alone; the request crosses that hop
// redirected.
func TestSidecarHopsProfile(t *testing.T) {
	e := newEnv(t, optsDefault)
	cfg := bpf.PodConfig{Rules: rules.SidecarHops(nodestate.DefaultSidecarUID)}
	a := e.pod("a", true, &cfg)
	b := e.pod("b", true, &cfg)
	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20})
	want(t, c, map[string]uint64{
		"connections_accepted":        1,
		"directions_redirected":       2,
		"directions_untrusted_reader": 0,
		"rejected_untrusted_readers":  2,
	})
	wantRedirected(t, c, 4<<20, "the request on the sidecar hop")
}

// The seed's default rules through both sidecars, one-way acceleration
// allowed: the app <-> sidecar hops are paired and their directions towards
// the sidecars redirected; the sidecar -> sidecar hop on 15006 is left to
// the stack (RETURN rule).
func TestDefaultRulesThreeHops(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &oneWayCfg)
	b := e.pod("b", true, &oneWayCfg)

	ds := e.directionsDuring(a, b.AppTarget(false))
	if len(ds) != 4 {
		t.Fatalf("want 4 directions (2 pairs), got %d: %+v", len(ds), ds)
	}
	up := hop(ds, 15001, true) // app -> sidecar: sidecar reads, redirected
	if up == nil || !up.Redirect || up.ToUID != 1337 {
		t.Errorf("app -> outbound sidecar (15001) not redirected: %+v", ds)
	}
	if down := hop(ds, 15001, false); down == nil || down.Redirect {
		t.Errorf("outbound sidecar -> app must take the stack (app not trusted): %+v", ds)
	}
	if in := hop(ds, 8080, true); in == nil || in.Redirect || in.From.Addr().String() != "127.0.0.6" {
		t.Errorf("inbound sidecar (127.0.0.6) -> app must be paired, on the stack: %+v", ds)
	}
	if back := hop(ds, 8080, false); back == nil || !back.Redirect || back.ToUID != 1337 {
		t.Errorf("app -> inbound sidecar not redirected: %+v", ds)
	}
	for _, d := range ds {
		if d.From.Port() == 15006 || d.To.Port() == 15006 {
			t.Errorf("the 15006 hop was paired: %+v", d)
		}
	}

	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, MaxWrite: 64 << 10})
	want(t, c, map[string]uint64{
		"connections_seen":            3,
		"connections_accepted":        2,
		"rejected_rules":              1,
		"directions_redirected":       2,
		"directions_untrusted_reader": 2,
		"fallback_map_full":           0,
		"fallback_stack_first":        0,
	})
	// The request (4 MiB) is redirected on the app -> sidecar hop.
	wantRedirected(t, c, 4<<20, "the request on the app -> sidecar hop")
}

// Without rules every hop is paired when one-way acceleration is allowed;
// untrusted app readers still get their data through the stack, trusted
// ones through the redirect.
func TestNoRulesAllHops(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        bpf.PodConfig
		redirected uint64
	}{
		{"apps untrusted, one way allowed", allOneWayCfg, 4},
		{"apps trusted", trustedAll, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, optsDefault)
			a := e.pod("a", true, &tc.cfg)
			b := e.pod("b", true, &tc.cfg)
			_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20})
			want(t, c, map[string]uint64{
				"connections_accepted":        3,
				"rejected_rules":              0,
				"directions_redirected":       tc.redirected,
				"directions_untrusted_reader": 6 - tc.redirected,
			})
			wantRedirected(t, c, 2*(4<<20), "the request on the app -> sidecar and sidecar -> sidecar hops")
		})
	}
}

// A pod without acceleration talking to an accelerated one: nothing of that
// connection is paired, data flows on the stack, no entry stays behind.
func TestPeerWithoutAcceleration(t *testing.T) {
	e := newEnv(t, optsDefault)
	plain := e.pod("plain", false, nil)
	meshed := e.pod("meshed", true, &trustedAll)

	_, c := e.run(plain, sim.ClientSpec{Mode: sim.ModeBulk, Target: meshed.AppTarget(false), Bytes: 8 << 20})
	want(t, c, map[string]uint64{"connections_accepted": 1, "rejected_no_local_peer": 1})

	// The other way round: the sidecar's connection to the plain pod
	// registers, is never paired and leaves the socket map once its first
	// data is acknowledged; its data takes the plain stack.
	_, c = e.run(meshed, sim.ClientSpec{Mode: sim.ModeBulk, Target: plain.AppTarget(false), Bytes: 8 << 20})
	want(t, c, map[string]uint64{"connections_accepted": 1, "connecting_registered": 2, "released_remote_peer": 1})
	if c["messages_unpaired"] > 4 {
		t.Errorf("messages_unpaired = %d: the unpaired socket stayed in the socket map", c["messages_unpaired"])
	}
}
