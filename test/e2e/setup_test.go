package e2e

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// A connecting socket joins the socket maps before it can know whether its
// peer is local. Once a destination on another node released a connecting
// socket of the pod (its first data acknowledged with the registration still
// pending), the pod's next connections to it join no socket map: they
// register only. A silent connection (nothing acknowledged, so it stays
// pending) shows where it is.
func TestRefusedDestinationJoinsNoMap(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, nil) // another node, as far as a can tell
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	runIso(t, ctx, b, isoSpec{Role: "keeper", Addr: addr})

	silent := func() bpf.Usage {
		t.Helper()
		h := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Count: 1, Silent: true})
		waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Pending == 1 })
		u, err := e.node.Usage()
		if err != nil {
			t.Fatal(err)
		}
		_ = h.Kill()
		e.waitNoConns()
		return u
	}
	if u := silent(); u.Sockets != 1 {
		t.Fatalf("first connection to %s: %+v, want it in sock_ops_map while its peer is unknown", addr, u)
	}

	before := e.counters()
	h := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Count: 1})
	waitCounter(t, e, before, "released_remote_peer", 1)
	_ = h.Kill()
	e.waitNoConns()

	if u := silent(); u.Sockets != 0 || u.Targets != 0 {
		t.Errorf("connection to %s after its release: %+v, want it registered in no socket map", addr, u)
	}
}

// A destination's refusal is a hint that the peer's judgment corrects: a
// pod that refused pairs (disabled) and is then enabled again gets the
// next connection on the stack (the connecting socket joined no map:
// rejected_no_local_peer), and the one after it paired. Every byte arrives
// either way.
func TestRefusedDestinationForgotten(t *testing.T) {
	e := newEnv(t, optsDefault)
	disabled := trustedAll
	disabled.Disabled = true
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &disabled)
	spec := sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20}

	_, c := e.run(a, spec)
	want(t, c, map[string]uint64{"connections_seen": 1, "rejected_disabled": 1, "connections_accepted": 0})
	_, c = e.run(a, spec)
	want(t, c, map[string]uint64{"connections_seen": 1, "rejected_disabled": 1, "connections_accepted": 0})

	if err := e.node.UpdatePod(b.Name, trustedAll); err != nil {
		t.Fatal(err)
	}
	_, c = e.run(a, spec)
	want(t, c, map[string]uint64{"connections_seen": 1, "rejected_no_local_peer": 1, "connections_accepted": 0,
		"bytes_redirected": 0})
	_, c = e.run(a, spec)
	want(t, c, map[string]uint64{"connections_seen": 1, "connections_accepted": 1, "rejected_no_local_peer": 0})
	wantRedirected(t, c, 1<<20, "the stream once the destination was forgotten")
}

// waitCounter waits up to 60 s for counter name to have grown by at least
// n since before.
func waitCounter(t *testing.T, e *env, before bpf.Counters, name bpf.Counter, n uint64) {
	t.Helper()
	var got uint64
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = e.counters()[name] - before[name]; got >= n {
			return
		}
	}
	t.Fatalf("counter %s grew by %d in 60 s, want %d", name, got, n)
}

// A socket joins one socket map: sock_ops_map when its own writes may be
// redirected (every connecting socket, before its pairing is known), else
// sock_rx_map when it only receives; a redirect target is found in the map
// recorded at pairing. A connection held open after its first byte shows
// where its two sockets are.
func TestPairedSocketsInOneMap(t *testing.T) {
	oneWayApp := bpf.PodConfig{Rules: &rules.Set{}}.WithOneWay()
	oneWayTrusted := bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}.WithOneWay()
	for _, tc := range []struct {
		name             string
		client, server   bpf.PodConfig
		sockets, targets int
	}{
		{"both ways", trustedAll, trustedAll, 2, 0},
		{"one way, towards the server", oneWayApp, oneWayTrusted, 1, 1},
		{"one way, towards the client", oneWayTrusted, oneWayApp, 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, optsDefault)
			a := e.pod("a", false, &tc.client)
			b := e.pod("b", false, &tc.server)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			addr := net.JoinHostPort(b.IPv4.String(), "9090")
			runIso(t, ctx, b, isoSpec{Role: "keeper", Addr: addr})
			h := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Count: 1})
			waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Directions == 2 })
			u, err := e.node.Usage()
			if err != nil {
				t.Fatal(err)
			}
			if u.Sockets != tc.sockets || u.Targets != tc.targets {
				t.Errorf("paired: %+v, want %d sockets in sock_ops_map and %d in sock_rx_map", u, tc.sockets, tc.targets)
			}
			_ = h.Kill()
			e.waitNoConns()
		})
	}
}
