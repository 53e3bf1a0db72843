package bpf

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// The kept entry counts and the socket hashes' counts equal a walk of
// each map after churn with real sockets: registrations and pairs made and
// closed by the data path, inserts refused at a full map (a registration;
// a pair whose second direction found no room, whose first is taken back),
// the sweep's deletions, and two sweeps (two handles, as the installer and
// the CLI) deleting the same stale entries while the pod closes its
// connections.
func TestKeptCountsMatchWalk(t *testing.T) {
	const size = 512
	o := Options{Root: upgradeRoot(t), MapSize: size, GuaranteedShare: size, GuaranteedPods: 1}
	n, err := OpenNode(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
	other, err := OpenNode(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	echo := echoListener(t)
	p, _ := attachTestPod(t, n, "fill", PodConfig{TrustApp: true})
	before := counters(t, n)

	// sock_helper_map full but for 20: 20 of 40 registrations go in.
	fillHelper(t, n, size-20)
	p.do(t, "dial %s 40", echo)
	waitCountsMatch(t, n, "registrations at a full sock_helper_map")
	if f, err := n.readFill(); err != nil || f.helper != size {
		t.Errorf("sock_helper_map counted %d (%v), want it full (%d)", f.helper, err, size)
	}
	if full := counters(t, n).Sub(before)["fallback_map_full"]; full != 20 {
		t.Errorf("%d registrations refused at the full map, want 20", full)
	}
	// Both handles sweep the fillers (registrations of no socket) at once.
	sweepBoth(t, n, other)
	waitCountsMatch(t, n, "two sweeps")

	// sock_proxy_map full but for 21: 10 pairs go in, the 11th's second
	// direction finds no room and its first is taken back.
	fillProxy(t, n, size-21)
	mid := counters(t, n)
	p.do(t, "self 15")
	waitCountsMatch(t, n, "pairs at a full sock_proxy_map")
	if got := counters(t, n).Sub(mid)["connections_accepted"]; got != 10 {
		t.Errorf("%d pairs recorded with room for 21 directions, want 10", got)
	}

	// The pod closes everything while both handles sweep the fillers.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); sweepBoth(t, n, other) }()
	p.do(t, "close")
	wg.Wait()
	sweepBoth(t, n, other) // what closed during the sweeps
	waitCountsMatch(t, n, "close during two sweeps")
	f, err := n.readFill()
	if err != nil {
		t.Fatal(err)
	}
	if f.proxy != 0 || f.helper != 0 {
		t.Errorf("after every connection closed: %d directions, %d registrations counted, want none", f.proxy, f.helper)
	}
	// The counts were right all along: no recount had anything to
	// correct (it would hide a delete left uncounted).
	if r := n.SweepTotals().Refilled + other.SweepTotals().Refilled; r != 0 {
		t.Errorf("the sweeps' recounts corrected %d kept counts, want none", r)
	}
}

// fillHelper puts count registrations of no socket into sock_helper_map,
// counted as the data path counts its own.
func fillHelper(t *testing.T, n *Node, count int) {
	t.Helper()
	for i := range count {
		k := meshSockKey{LocalPort: uint32(i + 1), Netns: 7}
		e := meshEndpointKey{Port: uint32(i + 1), Netns: 7}
		if err := n.maps.SockHelperMap.Update(e, meshHelperVal{Key: k, Born: monotonicMillis()}, ebpf.UpdateNoExist); err != nil {
			t.Fatalf("filler registration %d: %v", i, err)
		}
	}
	if err := n.fillAdd(meshFillKeptFILL_HELPER, int64(count)); err != nil {
		t.Fatal(err)
	}
}

// fillProxy puts count pair directions of no socket into sock_proxy_map,
// counted as the data path counts its own.
func fillProxy(t *testing.T, n *Node, count int) {
	t.Helper()
	for i := range count {
		k := meshSockKey{LocalPort: uint32(i + 1), Netns: 7}
		if err := n.maps.SockProxyMap.Update(k, meshProxyVal{Flags: proxyReleased}, ebpf.UpdateNoExist); err != nil {
			t.Fatalf("filler direction %d: %v", i, err)
		}
	}
	if err := n.fillAdd(meshFillKeptFILL_PROXY, int64(count)); err != nil {
		t.Fatal(err)
	}
}

// sweepBoth runs a full sweep cycle on both handles at once.
func sweepBoth(t *testing.T, a, b *Node) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, n := range []*Node{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = n.Sweep()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
	}
}

// waitCountsMatch waits (10 s) until every count MapFill reports equals a
// walk of its map, and fails with the difference.
func waitCountsMatch(t *testing.T, n *Node, when string) {
	t.Helper()
	var diff string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if diff = countsDiffer(t, n); diff == "" {
			return
		}
	}
	t.Errorf("%s: the counts differ from a walk of the maps: %s", when, diff)
}

func countsDiffer(t *testing.T, n *Node) string {
	t.Helper()
	fill, err := n.MapFill()
	if err != nil {
		t.Fatal(err)
	}
	maps := map[string]*ebpf.Map{
		"sock_proxy_map": n.maps.SockProxyMap, "sock_helper_map": n.maps.SockHelperMap,
		"sock_ops_map": n.maps.SockOpsMap, "sock_rx_map": n.maps.SockRxMap,
	}
	diff := ""
	for _, f := range fill {
		m := maps[f.Name]
		if m == nil {
			continue
		}
		walked, err := countEntries(m)
		if err != nil {
			t.Fatal(err)
		}
		if walked != f.Entries {
			diff += fmt.Sprintf(" %s: counted %d, walked %d;", f.Name, f.Entries, walked)
		}
	}
	// MapFill clamps to the capacity: the kept words themselves.
	f, err := n.readFill()
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range []*ebpf.Map{n.maps.SockProxyMap, n.maps.SockHelperMap} {
		walked, err := countEntries(m)
		if err != nil {
			t.Fatal(err)
		}
		if kept := usedOf(f.words[i]); kept != int64(walked) {
			diff += fmt.Sprintf(" %v: kept count %d, walked %d;", m, kept, walked)
		}
	}
	return diff
}

// The sweep's passes each examine a bounded slice of the maps: a leak
// larger than a pass is removed over the passes of one cycle, each pass
// removing at most about its slice. The recount runs when the cycle ends,
// net of what the cycle's own passes removed: a drift of a kept count
// (here 5 entries never counted) is corrected by the first cycle.
func TestSweepStepCycle(t *testing.T) {
	const leaked, batch = 300, 64
	n := testNode(t, Options{MapSize: 1024})
	n.sweepBatch = batch
	fillProxy(t, n, leaked)
	if err := n.fillAdd(meshFillKeptFILL_PROXY, 5); err != nil {
		t.Fatal(err)
	}
	var total Swept
	passes := 0
	for total.Directions < leaked && passes < 2*leaked/batch {
		s, err := n.SweepStep()
		if err != nil {
			t.Fatal(err)
		}
		passes++
		// A batch holds whole buckets: a little over the budget.
		if s.Directions > 2*batch {
			t.Errorf("pass %d removed %d directions, more than its slice of about %d", passes, s.Directions, batch)
		}
		total.add(s)
	}
	if total.Directions != leaked || passes < leaked/(2*batch) {
		t.Errorf("%d passes removed %d of %d leaked directions; want them all, in several passes", passes, total.Directions, leaked)
	}
	// The cycle ends with the pass that reaches the end of both maps.
	for range 2 {
		s, err := n.SweepStep()
		if err != nil {
			t.Fatal(err)
		}
		total.add(s)
	}
	if total.Refilled != 1 {
		t.Errorf("the cycle corrected %d kept counts, want 1 (sock_proxy_map)", total.Refilled)
	}
	if diff := countsDiffer(t, n); diff != "" {
		t.Errorf("after the cycle: %s", diff)
	}
}
