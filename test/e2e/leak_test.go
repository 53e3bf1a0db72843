package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// holderConns is the number of connections the holder role keeps open.
const holderConns = 4

// keep accepts connections, reads until the client's EOF, then keeps its
// side open for Duration before closing (the peer that keeps them open).
func (s isoSpec) keep() error {
	ln, err := listenTCP("tcp4", s.Addr, 0)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			time.Sleep(s.Duration)
			c.Close()
		}()
	}
}

// hold opens Count (holderConns) connections to Addr, sends a byte on
// each (unless Silent), then waits to be killed.
func (s isoSpec) hold() error {
	if s.Count == 0 {
		s.Count = holderConns
	}
	var conns []net.Conn
	for i := 0; i < s.Count; i++ {
		c, err := net.Dial("tcp4", s.Addr)
		if err != nil {
			return err
		}
		if s.Silent {
			conns = append(conns, c)
			continue
		}
		if _, err := c.Write([]byte{'h'}); err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	select {}
}

// Both pods of accelerated connections are deleted (detached) while the
// connections are established and their peer keeps them open; then the
// client's process dies (FIN_WAIT), the peer closes later (TIME_WAIT).
// No close callback runs for detached pods, so the sweeper the installer
// runs removes what the sockets left: within 60 s of the last socket
// closing every map is back to empty and no connection is listed.
// (Directly between the apps: a variant through both Envoy sidecars failed
// 2 of 3 full-suite CI runs, the server app reading EOF at once while its
// client lived, and is not in the suite until that is understood.)
func TestNoLeakAfterPodDeletion(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var swept atomic.Int64
	go e.node.SweepEvery(ctx, time.Second, func(s bpf.Swept, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		swept.Add(int64(s.Directions + s.Pending))
	})
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	runIso(t, ctx, b, isoSpec{Role: "keeper", Addr: addr, Duration: 2 * time.Second})
	holder := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr})
	waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Directions == 2*holderConns })

	// CNI DEL of both pods while the connections are established.
	for _, p := range []string{a.Name, b.Name} {
		if err := e.node.DetachPod(p); err != nil {
			t.Fatal(err)
		}
	}
	_ = holder.Kill() // FIN_WAIT, then TIME_WAIT once the keeper closes
	closed := time.Now()
	waitUsage(t, e.node, func(u bpf.Usage) bool {
		return u.Sockets == 0 && u.Targets == 0 && u.Directions == 0 && u.Pending == 0 && u.Pods == 0
	})
	ds, err := e.node.Directions()
	if err != nil || len(ds) != 0 {
		t.Errorf("connections still listed: %v (%v)", ds, err)
	}
	if swept.Load() == 0 {
		t.Errorf("the sweeper removed nothing: the close callbacks ran after all (the test no longer shows the leak)")
	}
	t.Logf("maps empty %v after the client died; sweeper removed %d entries", time.Since(closed).Round(time.Second), swept.Load())
}

// The registration of a connecting socket whose reader is not trusted
// (HELPER_UNTRUSTED) is in no socket map, so the sweep cannot tell from the
// maps whether its socket lives. Such a registration lives for the
// handshake, or until the first acknowledged data when the peer is
// elsewhere; one that two sweeps in a row find is stale. Here the
// connections never send (no acknowledged data) and their pod is deleted
// while they are open: the first sweep keeps the registrations, the second
// removes them, and the pod's other entries go too.
func TestUntrustedRegistrationSwept(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &annotationCfg)
	b := e.pod("b", false, nil) // another node, as far as a can tell
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	runIso(t, ctx, b, isoSpec{Role: "keeper", Addr: addr})
	holder := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Silent: true})
	defer holder.Kill()
	waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Pending == holderConns })
	if u, err := e.node.Usage(); err != nil || u.Sockets != 0 || u.Targets != 0 {
		t.Errorf("untrusted registrations joined a socket map: %+v, %v", u, err)
	}
	if err := e.node.DetachPod(a.Name); err != nil {
		t.Fatal(err)
	}
	s, err := e.node.Sweep()
	if err != nil || s.Pending != 0 {
		t.Fatalf("first sweep = %+v, %v; want the untrusted registrations kept", s, err)
	}
	if s, err = e.node.Sweep(); err != nil || s.Pending != holderConns {
		t.Fatalf("second sweep = %+v, %v; want the %d stale registrations removed", s, err, holderConns)
	}
	if u, err := e.node.Usage(); err != nil || u.Pending != 0 {
		t.Errorf("after the sweeps: %+v, %v", u, err)
	}
}

// waitUsage waits up to 60 s for the maps' usage to satisfy ok.
func waitUsage(t *testing.T, n *bpf.Node, ok func(bpf.Usage) bool) {
	t.Helper()
	var u bpf.Usage
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if u, err = n.Usage(); err == nil && ok(u) {
			return
		}
	}
	t.Fatalf("map usage %+v (%v) after 60 s", u, err)
}

// A pod that opens more idle connections than its quota of map entries
// gets the rest on the stack (rejected_pod_quota), and another pod is
// still accelerated although the maps are small enough that the first pod
// alone would fill them.
func TestPodQuota(t *testing.T) {
	const quota, conns = 16, 100
	e := newEnv(t, bpf.Options{MapSize: 128})
	limited := trustedAll
	limited.Quota = quota
	a := e.pod("a", false, &limited)
	c := e.pod("c", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	d := e.pod("d", false, &trustedAll)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := e.counters()
	addr := net.JoinHostPort(c.IPv4.String(), "9090")
	runIso(t, ctx, c, isoSpec{Role: "keeper", Addr: addr, Duration: time.Second})
	holder := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Count: conns})
	defer holder.Kill()
	u, err := e.node.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.Directions > quota {
		t.Errorf("pod a holds %d pair directions, quota %d", u.Directions, quota)
	}
	mid := e.counters().Sub(before)
	if got := mid["rejected_pod_quota"]; got < conns-quota {
		t.Errorf("rejected_pod_quota = %d, want >= %d", got, conns-quota)
	}
	res := b.RunCheckedClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: d.AppTarget(false), Streams: 4, Bytes: 1 << 20})
	after := e.counters().Sub(before)
	t.Logf("usage with pod a at its quota: %+v; b -> d verified %d bytes; counters %v", u, res.Bytes, after)
	if got := after["connections_accepted"] - mid["connections_accepted"]; got != 4 {
		t.Errorf("pod b's connections accepted: %d, want 4", got)
	}
	want(t, after, map[string]uint64{"fallback_map_full": 0})
}

// envChurnTotal sets the connection count of TestChurnAcrossPodLifecycles
// (the long run: 1000000 over 50 pod lifecycles).
const envChurnTotal = "MESH_ACCEL_CHURN_TOTAL"

// Short-lived client pods, one after another, each open a keep-alive pool
// to a long-lived server pod and churn through many short connections to
// it; each is deleted (CNI DEL, then the sandbox) while its pool is open.
// At the end, with the sweep the installer runs, every map is back to its
// baseline. CI runs 100,000 connections over 5 lifecycles.
func TestChurnAcrossPodLifecycles(t *testing.T) {
	total, cycles := 100_000, 5
	if testing.Short() {
		total = 10_000
	}
	if v := os.Getenv(envChurnTotal); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive count", envChurnTotal, v)
		}
		total, cycles = n, max(5, n/20_000)
	}
	e := newEnv(t, optsDefault)
	s := e.pod("s", false, &trustedAll)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Hour)
	defer cancel()
	go e.node.SweepEvery(ctx, time.Second, func(_ bpf.Swept, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
	})
	pool := net.JoinHostPort(s.IPv4.String(), "9090")
	runIso(t, ctx, s, isoSpec{Role: "keeper", Addr: pool, Duration: time.Second})
	before := e.counters()
	start := time.Now()
	done := 0
	for i := 0; i < cycles; i++ {
		a := e.pod(fmt.Sprintf("c%d", i), false, &trustedAll)
		runIso(t, ctx, a, isoSpec{Role: "holder", Addr: pool, Count: 8})
		n := total / cycles
		if i == cycles-1 {
			n = total - done
		}
		res, err := a.RunClient(ctx, sim.ClientSpec{Mode: sim.ModeChurn, Target: s.AppTarget(false), Count: n,
			Concurrency: 8})
		if err != nil || !res.OK || res.Conns != n {
			t.Fatalf("cycle %d: %d of %d connections, %v %v", i, res.Conns, n, err, res.Errors)
		}
		done += n
		if err := e.node.DetachPod(a.Name); err != nil {
			t.Fatal(err)
		}
		if err := e.sim.RemovePod(a); err != nil {
			t.Fatal(err)
		}
	}
	waitUsage(t, e.node, func(u bpf.Usage) bool {
		return u.Sockets == 0 && u.Targets == 0 && u.Directions == 0 && u.Pending == 0 && u.Pods == 1
	})
	c := e.counters().Sub(before)
	t.Logf("%d connections over %d pod lifecycles in %v; maps at baseline; accepted %d, closed %d",
		done, cycles, time.Since(start).Round(time.Second), c["connections_accepted"], c["accelerated_pairs_closed"])
	if c["connections_accepted"] < uint64(done) {
		t.Errorf("connections_accepted = %d, want >= %d (counters %v)", c["connections_accepted"], done, c)
	}
}
