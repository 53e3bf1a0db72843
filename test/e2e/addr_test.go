package e2e

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// IPv6 end to end, and IPv4 clients of the sidecars' dual-stack [::]
// listeners (IPv4-mapped sockets): both are paired and redirected.
func TestIPv6AndDualStack(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	// -short (the kernel matrix, under emulation) scales the streams down:
	// 16 MiB each took the 30 s I/O deadline on a loaded machine there.
	size := uint64(16 << 20)
	if testing.Short() {
		size = 4 << 20
	}
	for _, v6 := range []bool{true, false} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(v6), Bytes: int64(size), Streams: 4})
			want(t, c, map[string]uint64{"connections_accepted": 12, "directions_redirected": 24})
			// The 4 streams' bytes cross at least two redirected hops.
			wantRedirected(t, c, 2*4*size, fmt.Sprintf("4 streams of %d bytes over at least two hops", size))
		})
	}
}

// Two pods use the same loopback address and port at the same time: every
// pod's client reaches its own app and gets its own data back.
func TestSameLoopbackPortTwoPods(t *testing.T) {
	e := newEnv(t, optsDefault)
	pods := []*sim.Pod{e.pod("p1", false, &trustedAll), e.pod("p2", false, &trustedAll)}
	var wg sync.WaitGroup
	results := make([]*sim.ClientResult, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = p.RunTestClient(t, sim.ClientSpec{Mode: sim.ModeEcho, Target: "127.0.0.1:8080",
				Streams: 8, Bytes: 4 << 20, Seed: int64(1000 * (i + 1)), MaxWrite: 256 << 10})
		}()
	}
	wg.Wait()
	for i, r := range results {
		if !r.OK {
			t.Fatalf("pod %s: %v", pods[i].Name, r.Errors)
		}
	}
	for _, p := range pods {
		res := p.RunTestClient(t, sim.ClientSpec{Mode: sim.ModePeer, Target: "127.0.0.1:8080"})
		if !res.OK || res.Peer == nil || res.Peer.Pod != p.Name {
			t.Fatalf("client in %s reached %+v", p.Name, res.Peer)
		}
	}
	c := e.counters()
	if c["connections_accepted"] < 16 || c["rejected_ambiguous"] != 0 {
		t.Fatalf("want the 16 echo connections paired, none ambiguous: %v", c)
	}
	e.waitNoConns()
}
