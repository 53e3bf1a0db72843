package bpf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// DefaultSweepInterval is how often [Node.SweepEvery] runs in the
// installer.
const DefaultSweepInterval = 10 * time.Second

// Swept counts what one [Node.Sweep] did.
type Swept struct {
	// Directions are pair entries whose socket had left both socket maps
	// (closed) without the close callback removing them, or whose peer had
	// (PeerGone of them: the direction is released, kept charged while its
	// own socket is in a socket map).
	Directions, PeerGone int
	// Pending are registrations removed: of sockets that closed unseen,
	// of untrusted readers that two sweeps in a row found, and (Expired of
	// them) registrations that waited longer than the registration TTL for
	// a local peer.
	Pending, Expired int
	// Recounted are the pods whose usage count the sweep corrected,
	// Refilled the kept entry counts (of sock_proxy_map and
	// sock_helper_map) it corrected.
	Recounted, Refilled int
}

// recountGuard separates the sweep's readings of the usage counts from its
// scans of the maps: an entry's change and its charge are made by one
// program run, so a count that did not move from guard before a scan to
// guard after it saw no change of its entries during the scan.
const recountGuard = 5 * time.Millisecond

// Sweep removes map entries left by sockets that closed unseen, releases
// registrations that waited too long for a local peer, and corrects the
// pods' usage counts.
//
// The close callback (sockops) removes a socket's entries, but it runs
// only while the socket's pod is attached, and sockets outlive their pod's
// DEL (keep-alive pools, FIN_WAIT and TIME_WAIT after the process ended).
// A closed socket has left the socket maps (the kernel unlinks it when its
// process closes it), so a pair entry whose socket is in neither socket
// map, and a registration whose socket is not in sock_ops_map, belong to
// no live socket; the pod they were charged to gets them back. A pair
// entry whose peer is in neither socket map has no reader: its socket may
// live on (a connection whose reader closed while its pod was detached,
// kept open by its writer), but its data can only take the stack, and the
// address it holds of the reader is stale; it is released (never
// redirected again) and stays charged until its own socket leaves the
// maps.
//
// A registration (a connecting socket waiting for its local peer) older
// than the registration TTL is released: its socket leaves the socket
// maps and takes the stack. A local peer pairs within the handshake, so
// such a socket's peer is elsewhere, or it never sent a byte (the first
// acknowledged data releases it too). The release deletes the
// registration first (sock_helper_map's LOOKUP_AND_DELETE, which returns
// exactly what it removed): a pairing and a release both delete it, only
// one succeeds, and only a registration never paired, whose socket never
// received a redirected byte, is released.
//
// The usage counts: the sweep counts every entry charged to each pod while
// it scans (a cycle), and corrects a count by what it finds (a count drifts only
// when an entry leaves unseen, e.g. a stale pair direction another layout's
// sweep deleted). Counts move under the scan, so it corrects by delta,
// never overwriting: a pod whose count did not move while it scanned gets
// exactly what the scan found; one that moved g entries meanwhile differs
// from the scan by at most g, and only an undercount larger than that is
// corrected, by what exceeds g (an undercount lets a pod hold more than
// its share; an overcount only holds it back, until a quiet sweep).
//
// Racing the data path is harmless: a socket joins its socket maps before
// its entries are written, and an entry removed by mistake costs that
// connection its acceleration (its messages take the stack), never data.
//
// The maps are scanned in a cycle of passes (sweepcycle.go): Sweep runs a
// whole cycle of its own, from the first bucket, at once (tests, and
// anything that needs every entry examined now); the installer runs one
// bounded pass at a time ([Node.SweepStep]). A cycle reads each hash map
// bucket by bucket from a cursor kept between passes (the bucket index:
// deletes do not move it), so an entry there for the whole cycle is seen
// exactly once, and a leak is found within one cycle. The recounts (usage
// and the kept entry counts) run when a cycle completes, over what the
// whole cycle found; an untrusted registration is stale when two cycles in
// a row found it.
func (n *Node) Sweep() (Swept, error) {
	n.sweepMu.Lock()
	defer n.sweepMu.Unlock()
	n.cycle = nil // a full cycle of its own, from the first bucket
	var total Swept
	for {
		s, done, err := n.sweepPass(0)
		total.add(s)
		if err != nil || done {
			n.totals.add(total)
			return total, err
		}
	}
}

// SweepStep runs one pass of the sweep's cycle (see [Node.Sweep]): it
// examines at most about [SweepBatch] entries of each connection map,
// from where the last pass stopped, so that a pass costs the same at any
// fill, and a full cycle over every entry takes fill/SweepBatch passes. A
// cycle's recount of the usage counts and of the kept entry counts runs
// when it completes.
func (n *Node) SweepStep() (Swept, error) {
	n.sweepMu.Lock()
	defer n.sweepMu.Unlock()
	s, _, err := n.sweepPass(n.sweepBatch)
	n.totals.add(s)
	return s, err
}

// sweepPass scans up to budget entries of each connection map (0: every
// one), removes what it found stale and, at the end of the cycle,
// recounts. It reports whether the cycle completed.
func (n *Node) sweepPass(budget int) (Swept, bool, error) {
	var s Swept
	c := n.cycle
	if c == nil {
		var err error
		if c, err = n.startCycle(); err != nil {
			return s, false, err
		}
		n.cycle = c
	}
	gone, peerLost, err := c.scanProxy(n, budget)
	if err != nil {
		n.cycle = nil
		return s, false, err
	}
	release, err := c.scanHelper(n, budget)
	if err != nil {
		n.cycle = nil
		return s, false, err
	}
	done := c.proxyDone && c.helperDone
	if done {
		n.cycle = nil
		if s.Recounted, s.Refilled, err = n.endCycle(c); err != nil {
			return s, done, err
		}
	}
	err = n.removeStale(&s, gone, peerLost, release)
	if !done {
		c.removed[meshFillKeptFILL_PROXY] += int64(s.Directions - s.PeerGone)
		c.removed[meshFillKeptFILL_HELPER] += int64(s.Pending)
	}
	return s, done, err
}

// removeStale removes the pair directions and registrations a pass found
// stale, each if it still is.
func (n *Node) removeStale(s *Swept, gone, peerLost []meshSockKey, release []found) error {
	for _, key := range gone {
		removed, err := n.removeGoneDirection(key)
		if err != nil {
			return err
		}
		if removed {
			s.Directions++
		}
	}
	for _, key := range peerLost {
		released, err := n.releasePeerLost(key)
		if err != nil {
			return err
		}
		if released {
			s.Directions++
			s.PeerGone++
		}
	}
	for _, f := range release {
		done, err := n.releaseRegistration(f.e, f.h)
		if err != nil {
			return err
		}
		if done {
			s.Pending++
			if f.expiry {
				s.Expired++
			}
		}
	}
	return nil
}

// removeGoneDirection deletes a pair direction whose socket left the
// socket maps, if it still did (a new socket may have taken the tuple, or
// a new pair been recorded under it, meanwhile), and gives its pod the
// entry back.
func (n *Node) removeGoneDirection(key meshSockKey) (bool, error) {
	var v meshProxyVal
	if err := n.maps.SockProxyMap.Lookup(&key, &v); err != nil || n.directionStale(&key, &v) != ownGone {
		return false, nil
	}
	if err := n.maps.SockProxyMap.LookupAndDelete(&key, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("delete from sock_proxy_map: %w", err)
	}
	if err := n.fillAdd(meshFillKeptFILL_PROXY, -1); err != nil {
		return true, err
	}
	return true, n.giveBack(payer(&v), 1)
}

// releasePeerLost releases a pair direction whose reader left the socket
// maps: replaced whole by its released form, it is never redirected again
// and stays charged while its own socket is in a socket map.
func (n *Node) releasePeerLost(key meshSockKey) (bool, error) {
	var v meshProxyVal
	if err := n.maps.SockProxyMap.Lookup(&key, &v); err != nil || n.directionStale(&key, &v) != peerGone {
		return false, nil
	}
	err := n.maps.SockProxyMap.Update(&key, releasedDirection(&v), ebpf.UpdateExist)
	switch {
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("release a direction in sock_proxy_map: %w", err)
	}
	return true, nil
}

// releasedDirection is v released (release_direction in c/mesh_accel.c):
// no peer, never redirected, charged to the same pod.
func releasedDirection(v *meshProxyVal) meshProxyVal {
	return meshProxyVal{Pod: v.Pod, PeerPod: v.PeerPod, Uid: v.Uid, PeerUid: v.PeerUid, Bytes: v.Bytes, Msgs: v.Msgs,
		Holds: v.Holds, Flags: proxyReleased | v.Flags&proxyActive}
}

// releaseRegistration releases the registration at e that the scan found
// as h, if it is still there: deleting it decides (the data path's rule,
// c/mesh_accel.c "Who owns a registration"); what the delete returned was
// never paired, so its socket leaves the socket maps, then its pod gets
// the entry back. If another registration took the endpoint in between,
// that one is released instead, which only leaves it on the stack.
func (n *Node) releaseRegistration(e meshEndpointKey, h meshHelperVal) (bool, error) {
	var cur meshHelperVal
	if err := n.maps.SockHelperMap.Lookup(&e, &cur); err != nil || cur.Cookie != h.Cookie {
		return false, nil
	}
	if err := n.maps.SockHelperMap.LookupAndDelete(&e, &cur); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("delete from sock_helper_map: %w", err)
	}
	if err := n.fillAdd(meshFillKeptFILL_HELPER, -1); err != nil {
		return true, err
	}
	if cur.Flags&helperUntrusted == 0 {
		for _, m := range []*ebpf.Map{n.maps.SockOpsMap, n.maps.SockRxMap} {
			if err := removeSocket(m, &cur.Key, cur.Cookie); err != nil {
				return true, err
			}
		}
	}
	return true, n.giveBack(cur.Pod, 1)
}

// removeSocket deletes the socket with this cookie from the socket map m,
// where it is under key (not another socket that took the key since).
func removeSocket(m *ebpf.Map, key *meshSockKey, cookie uint64) error {
	var got uint64
	if err := m.Lookup(key, &got); err != nil || got != cookie {
		return nil
	}
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete a released socket from %v: %w", m, err)
	}
	return nil
}

// ReleaseClosed removes the released pair directions (PROXY_RELEASED)
// whose socket has left the socket maps, and gives their pods the entries
// back: what Sweep does for them, for tests that wait for the maps to
// empty without a sweep running.
func (n *Node) ReleaseClosed() (int, error) {
	var keys []meshSockKey
	err := scanHash(n.maps.SockProxyMap, func(k *meshSockKey, v *meshProxyVal) {
		if v.Flags&proxyReleased != 0 && !n.inSocketMaps(k) {
			keys = append(keys, *k)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("scan sock_proxy_map: %w", err)
	}
	removed := 0
	for _, k := range keys {
		ok, err := n.removeGoneDirection(k)
		if err != nil {
			return removed, err
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

// recount corrects the usage count of every pod by what the scans found
// (held) between its readings before and after them (see Sweep), and
// removes the count of a pod no longer attached once nothing is charged
// to it. It returns how many pods it corrected.
func (n *Node) recount(before, after map[uint64]uint64, held map[uint64]int64) (int, error) {
	corrected := 0
	for pod, w0 := range before {
		w1, ok := after[pod]
		if !ok {
			continue
		}
		moved := int64(genOf(w1) - genOf(w0))
		drift := usedOf(w0) - held[pod] // within moved of the truth
		var fix int64
		switch {
		case drift+moved < 0:
			fix = -(drift + moved)
		case moved == 0:
			fix = -drift
		}
		if fix != 0 {
			if _, err := n.usageOp(pod, fix); err != nil && !errors.Is(err, errNoUsage) {
				return corrected, fmt.Errorf("correct the usage count of pod (cgroup %d): %w", pod, err)
			}
			corrected++
		}
		if moved == 0 && held[pod] == 0 && usedOf(w1)+fix == 0 {
			if err := n.retireUsage(pod); err != nil {
				return corrected, err
			}
		}
	}
	return corrected, nil
}

// retireUsage removes the usage count of a pod that is no longer attached
// and holds nothing: no program charges a pod without a filter.
func (n *Node) retireUsage(pod uint64) error {
	var pc meshPodConfig
	if err := n.maps.SockParamMap.Lookup(pod, &pc); err == nil || !errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	if err := n.maps.PodUsage.Delete(pod); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove the usage count of pod (cgroup %d): %w", pod, err)
	}
	return nil
}

// scanHash calls fn for every element of the hash map m, read bucket by
// bucket (BPF_MAP_LOOKUP_BATCH): an element there for the whole scan is
// seen exactly once, whatever is added or deleted meanwhile (a key walk
// starts over when the key it stands on is deleted, and counts twice).
func scanHash[K, V any](m *ebpf.Map, fn func(*K, *V)) error {
	// A batch holds whole buckets; buckets hold a few elements.
	const size = 1024
	keys, vals := make([]K, size), make([]V, size)
	var cursor ebpf.MapBatchCursor
	for {
		count, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := 0; i < count; i++ {
			fn(&keys[i], &vals[i])
		}
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// monotonicMillis is CLOCK_MONOTONIC in milliseconds modulo 2^32, the
// clock of helper_val.born (bpf_ktime_get_ns): the age of a registration
// is now - born, modulo 2^32 too.
func monotonicMillis() uint32 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint32(ts.Sec*1000 + ts.Nsec/1_000_000)
}

const helperUntrusted = uint32(meshHelperFlagHELPER_UNTRUSTED)

// Why a pair direction is stale.
const (
	live     = iota
	ownGone  // its socket is in neither socket map
	peerGone // its peer is in neither socket map
)

// directionStale tells whether the pair direction k (value v) has lost its
// socket or its peer. A live pair's sockets are in a socket map before its
// directions are recorded: the connecting socket from its registration on,
// the accepted one in sock_ops_map when its own direction may be
// redirected, else in sock_rx_map.
//
// A released direction (PROXY_RELEASED) has no peer: it is stale once its
// own socket has gone.
func (n *Node) directionStale(k *meshSockKey, v *meshProxyVal) int {
	switch {
	case !n.inSocketMaps(k):
		return ownGone
	case v.Flags&proxyReleased == 0 && !n.inSocketMaps(&v.Peer):
		return peerGone
	}
	return live
}

// inSocketMaps reports whether a socket is in either socket map under k.
func (n *Node) inSocketMaps(k *meshSockKey) bool {
	return n.inSocketMap(n.maps.SockOpsMap, k) || n.inSocketMap(n.maps.SockRxMap, k)
}

// payer is the pod charged for a pair direction: the connecting side's
// (payer_of in c/mesh_accel.c).
func payer(v *meshProxyVal) uint64 {
	if v.Flags&proxyActive != 0 {
		return v.Pod
	}
	return v.PeerPod
}

// inSocketMap reports whether a socket is in the socket map under k. A
// lookup error other than "not found" counts as present: the sweep then
// leaves the entry alone.
func (n *Node) inSocketMap(m *ebpf.Map, k *meshSockKey) bool {
	var cookie uint64
	err := m.Lookup(k, &cookie)
	return err == nil || !errors.Is(err, ebpf.ErrKeyNotExist)
}

func deleteIfPresent(m *ebpf.Map, key any) (bool, error) {
	err := m.Delete(key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ebpf.ErrKeyNotExist):
		return false, nil
	}
	return false, fmt.Errorf("delete from %v: %w", m, err)
}

// SweepEvery runs a pass of the sweep ([Node.SweepStep]) every interval
// until ctx is done, and reports each result (or error) to report, which
// may be nil.
func (n *Node) SweepEvery(ctx context.Context, interval time.Duration, report func(Swept, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s, err := n.SweepStep()
			if report != nil {
				report(s, err)
			}
		}
	}
}
