package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// At least 1 GiB in total (64 MiB with -short) over many parallel
// checksummed streams, with write sizes from 1 B to 1 MiB, each stream
// writing the moment connect returns, through both sidecars with every hop
// redirected and, separately, with the default rules and one-way
// acceleration. Every byte must arrive, once, in order.
func TestBulkChecksummed(t *testing.T) {
	total, streams := int64(1<<30), 32
	if testing.Short() { // scaled down (the kernel matrix runs it under qemu's emulation)
		total, streams = 64<<20, 8
	}
	for _, tc := range []struct {
		name string
		cfg  bpf.PodConfig
	}{
		{"all hops", trustedAll},
		{"default rules, one way", oneWayCfg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, optsDefault)
			a := e.pod("a", true, &tc.cfg)
			b := e.pod("b", true, &tc.cfg)
			res, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Streams: streams,
				Bytes: total / int64(streams), MinWrite: 1, MaxWrite: 1 << 20, Seed: 7})
			if res.Bytes != total || res.Conns != streams {
				t.Fatalf("verified %d bytes over %d streams, want %d over %d", res.Bytes, res.Conns, total, streams)
			}
			wantPositive(t, c, "bytes_redirected", "messages_redirected")
			want(t, c, map[string]uint64{"fallback_map_full": 0})
			t.Logf("redirected %d MiB in %d messages; counters %v", c["bytes_redirected"]>>20, c["messages_redirected"], c)
		})
	}
}

// Half-close and reset behave exactly as without acceleration.
func TestHalfCloseAndReset(t *testing.T) {
	e := newEnv(t, optsDefault)
	acc := [2]*sim.Pod{e.pod("a", true, &trustedAll), e.pod("b", true, &trustedAll)}
	plain := [2]*sim.Pod{e.pod("pa", true, nil), e.pod("pb", true, nil)}

	for _, pair := range [][2]*sim.Pod{plain, acc} {
		// Echo with half-close: the client shuts its write side after its
		// stream and must still read the whole echo, then EOF.
		e.run(pair[0], sim.ClientSpec{Mode: sim.ModeEcho, Target: pair[1].AppTarget(false), Streams: 8,
			Bytes: 8 << 20, MinWrite: 1, MaxWrite: 1 << 20})
	}
	var got [2]*sim.ClientResult
	for i, pair := range [][2]*sim.Pod{plain, acc} {
		got[i] = pair[0].RunTestClient(t, sim.ClientSpec{Mode: sim.ModeReset, Target: pair[1].AppTarget(false), Bytes: 4 << 20})
	}
	for i, r := range got {
		if !r.ResetSeen || !r.PrefixOK {
			t.Errorf("%s: reset seen %v, correct prefix %v (%d bytes): %v", []string{"plain", "accelerated"}[i],
				r.ResetSeen, r.PrefixOK, r.ReceivedBeforeReset, r.Errors)
		}
	}
	e.waitNoConns()
}

// With the default configuration an app that reads with splice (io.Copy to a
// file and to another socket) receives every byte, while the directions
// towards the sidecars stay accelerated (flow control may carry part of
// them on the stack when a sidecar falls behind).
func TestSpliceReadingApp(t *testing.T) {
	perStream := int64(32 << 20)
	if testing.Short() { // scaled down (the kernel matrix runs it under qemu's emulation)
		perStream = 4 << 20
	}
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &oneWayCfg)
	b := e.pod("b", true, &oneWayCfg)
	for _, op := range []byte{sim.OpSinkFile, sim.OpSinkSplice} {
		_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Op: op, Target: b.AppTarget(false), Streams: 4,
			Bytes: perStream, MinWrite: 1, MaxWrite: 1 << 20})
		want(t, c, map[string]uint64{"connections_accepted": 8, "directions_redirected": 8, "directions_untrusted_reader": 8})
		wantRedirected(t, c, uint64(perStream), fmt.Sprintf("op %c: a good part of the %d MiB sent towards the outbound sidecar",
			op, 4*perStream>>20))
	}
}

// Requests written the instant connect returns, over thousands of short
// connections, arrive whole and in order; and 20,000 connections leave the
// maps as empty as before.
func TestChurnLeavesNoEntries(t *testing.T) {
	count := 20000
	if testing.Short() {
		count = 2000
	}
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	before := e.counters()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := a.RunClient(ctx, sim.ClientSpec{Mode: sim.ModeChurn, Target: b.AppTarget(false), Count: count, Concurrency: 8})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("churn: %d errors, %d mismatches: %v", res.ErrorCount, res.Mismatches, res.Errors)
	}
	e.waitNoConns()
	c := e.counters().Sub(before)
	if res.Conns != count {
		t.Fatalf("%d of %d connections completed", res.Conns, count)
	}
	if c["connections_accepted"] < uint64(count) {
		t.Errorf("connections_accepted = %d, want >= %d: %v", c["connections_accepted"], count, c)
	}
	t.Logf("%d connections in %.1fs; counters: %v", count, res.ElapsedSec, c)
}

// A full map is a fallback to the stack, counted, never an error. With
// the share kept for one pod only, the pods here are past the guarantee
// and the maps fill (with the default share, a pod is refused its share
// first: rejected_shared_pool, TestFairShareUnderIdleAttack).
func TestMapFullFallsBack(t *testing.T) {
	e := newEnv(t, bpf.Options{MapSize: 8, GuaranteedPods: 1})
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Streams: 32, Bytes: 2 << 20, MaxWrite: 256 << 10})
	wantPositive(t, c, "fallback_map_full", "connections_accepted")
}

// The global switch: off, no new connection is paired; on again, they are.
func TestGlobalSwitch(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	if err := e.node.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})
	want(t, c, map[string]uint64{"connections_accepted": 0, "rejected_disabled": 3, "bytes_redirected": 0})
	if err := e.node.SetEnabled(true); err != nil {
		t.Fatal(err)
	}
	_, c = e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})
	want(t, c, map[string]uint64{"connections_accepted": 3})
}
