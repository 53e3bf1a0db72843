package bpf

// The sweep's cycle: the connection maps are scanned a slice per pass
// (SweepStep), from a cursor kept between passes, so that a pass costs the
// same whatever the maps hold; what needs every entry (the recounts) runs
// when a cycle completes.

import (
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// SweepBatch is about how many entries of each connection map one
// [Node.SweepStep] examines (rounded up to whole batches of hash buckets):
// about 14 ms of CPU at full maps here (docs/benchmark.md, "Cost of the
// node state"), and at the default interval a full cycle over maps of
// 65,536 entries takes 32 passes, about 5 minutes.
const SweepBatch = 2048

// scanBatch is how many elements one BPF_MAP_LOOKUP_BATCH reads, at most
// and (minScanBatch) at least: a batch holds whole buckets, and buckets
// hold a few elements.
const scanBatch, minScanBatch = 1024, 64

// sweepCycle is what a cycle gathered so far.
type sweepCycle struct {
	proxyCursor, helperCursor ebpf.MapBatchCursor
	proxyDone, helperDone     bool
	// before are the usage words, fillBefore the kept count words, read
	// when the cycle began.
	before     map[uint64]uint64
	fillBefore [meshFillKeptFILL_KEPT]uint64
	// held are the entries charged to each pod, found the entries of each
	// kept map, as scanned.
	held  map[uint64]int64
	found [meshFillKeptFILL_KEPT]int64
	// removed are the entries of each kept map the cycle's passes
	// deleted (and uncounted) before it ended.
	removed [meshFillKeptFILL_KEPT]int64
	// untrusted are the untrusted registrations this cycle found.
	untrusted map[meshHelperVal]bool
}

// found is a registration a pass found stale.
type found struct {
	e      meshEndpointKey
	h      meshHelperVal
	expiry bool
}

// startCycle reads the counts a cycle's recounts start from.
func (n *Node) startCycle() (*sweepCycle, error) {
	c := &sweepCycle{held: map[uint64]int64{}, untrusted: map[meshHelperVal]bool{}}
	var err error
	if c.before, err = n.usageWords(); err != nil {
		return nil, err
	}
	f, err := n.readFill()
	if err != nil {
		return nil, err
	}
	c.fillBefore = f.words
	time.Sleep(recountGuard)
	return c, nil
}

// endCycle corrects the usage counts and the kept entry counts by what the
// cycle found (see Sweep), and keeps the untrusted registrations it saw
// for the next cycle. It returns how many of each it corrected.
func (n *Node) endCycle(c *sweepCycle) (int, int, error) {
	n.untrustedSeen = c.untrusted
	if n.scanHook != nil {
		n.scanHook()
	}
	time.Sleep(recountGuard)
	after, err := n.usageWords()
	if err != nil {
		return 0, 0, err
	}
	f, err := n.readFill()
	if err != nil {
		return 0, 0, err
	}
	pods, err := n.recount(c.before, after, c.held)
	if err != nil {
		return pods, 0, err
	}
	fixed, err := n.recountFill(c, f.words)
	return pods, fixed, err
}

// recountFill corrects each kept entry count by what the cycle found, as
// recount does the usage counts. Without drift a count at the end of the
// cycle is what the cycle found less what its passes removed, give or take
// the other changes during the cycle (its generation moved by them and by
// the passes' removals): a count no one else moved gets exactly that; one
// that others moved g times only the excess beyond g. A count drifts only
// when an entry left or came in without it (user space deleted one and
// died before it counted it).
func (n *Node) recountFill(c *sweepCycle, after [meshFillKeptFILL_KEPT]uint64) (int, error) {
	fixed := 0
	for i := range after {
		moved := int64(genOf(after[i])-genOf(c.fillBefore[i])) - c.removed[i]
		drift := usedOf(after[i]) - (c.found[i] - c.removed[i])
		var fix int64
		switch {
		case moved == 0:
			fix = -drift
		case drift > moved:
			fix = -(drift - moved)
		case drift < -moved:
			fix = -(drift + moved)
		}
		if fix == 0 {
			continue
		}
		if err := n.fillAdd(meshFillKept(i), fix); err != nil {
			return fixed, fmt.Errorf("correct a kept entry count: %w", err)
		}
		fixed++
	}
	return fixed, nil
}

// scanSlice calls fn for the elements of the hash map m from cursor on,
// batch by batch, until it read at least budget of them (0: all). It
// reports whether it reached the end of the map.
func scanSlice[K, V any](m *ebpf.Map, cursor *ebpf.MapBatchCursor, budget int, fn func(*K, *V)) (bool, error) {
	size := scanBatch
	if budget > 0 {
		size = min(size, max(budget, minScanBatch))
	}
	keys, vals := make([]K, size), make([]V, size)
	read := 0
	for budget == 0 || read < budget {
		count, err := m.BatchLookup(cursor, keys, vals, nil)
		for i := 0; i < count; i++ {
			fn(&keys[i], &vals[i])
		}
		read += count
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
	return false, nil
}

// scanProxy scans a slice of sock_proxy_map: the directions whose socket
// (gone) or peer (peerLost) left the socket maps.
func (c *sweepCycle) scanProxy(n *Node, budget int) (gone, peerLost []meshSockKey, err error) {
	if c.proxyDone {
		return nil, nil, nil
	}
	c.proxyDone, err = scanSlice(n.maps.SockProxyMap, &c.proxyCursor, budget, func(k *meshSockKey, v *meshProxyVal) {
		c.held[payer(v)]++
		c.found[meshFillKeptFILL_PROXY]++
		if why := n.directionStale(k, v); why == ownGone {
			gone = append(gone, *k)
		} else if why == peerGone {
			peerLost = append(peerLost, *k)
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("scan sock_proxy_map: %w", err)
	}
	return gone, peerLost, nil
}

// scanHelper scans a slice of sock_helper_map: the registrations to
// release.
//
// A registration of an untrusted reader (HELPER_UNTRUSTED) is in no
// socket map; it lives for its connection's handshake, or until the first
// acknowledged data when the peer is remote. One found by two cycles in a
// row is stale.
func (c *sweepCycle) scanHelper(n *Node, budget int) ([]found, error) {
	if c.helperDone {
		return nil, nil
	}
	var release []found
	now, ttl := monotonicMillis(), uint32(n.ttl/time.Millisecond)
	var err error
	c.helperDone, err = scanSlice(n.maps.SockHelperMap, &c.helperCursor, budget, func(e *meshEndpointKey, h *meshHelperVal) {
		c.held[h.Pod]++
		c.found[meshFillKeptFILL_HELPER]++
		old := now-h.Born >= ttl
		switch {
		case h.Flags&helperUntrusted != 0 && (n.untrustedSeen[*h] || old):
			release = append(release, found{*e, *h, false})
		case h.Flags&helperUntrusted != 0:
			c.untrusted[*h] = true
		case !n.inSocketMap(n.maps.SockOpsMap, &h.Key):
			release = append(release, found{*e, *h, false})
		case old:
			release = append(release, found{*e, *h, true})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("scan sock_helper_map: %w", err)
	}
	return release, nil
}
