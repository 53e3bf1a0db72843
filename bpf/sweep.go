package bpf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
)

// DefaultSweepInterval is how often [Node.SweepEvery] runs in the
// installer.
const DefaultSweepInterval = 10 * time.Second

// Swept counts the entries one [Node.Sweep] removed.
type Swept struct {
	// Directions are pair entries whose socket, or whose peer (PeerGone
	// of them), had left both socket maps (closed) without the close
	// callback removing them; Pending are registrations of such sockets.
	Directions, PeerGone, Pending int
}

// Sweep removes map entries left by sockets that closed unseen. The close
// callback (sockops) removes a socket's entries, but it runs only while
// the socket's pod is attached, and sockets outlive their pod's DEL (keep-
// alive pools, FIN_WAIT and TIME_WAIT after the process ended). A closed
// socket has left the socket maps (the kernel unlinks it at close), so a
// pair entry whose socket is in neither socket map, and a registration
// whose socket is not in sock_ops_map, belong to no live socket. A pair
// entry whose peer is in neither socket map has no reader: its socket may
// live on (a connection whose reader closed while its pod was detached,
// kept open by its writer), but its data can only take the stack, and the
// address it holds of the reader is stale.
//
// Racing the data path is harmless: a socket joins its socket maps before
// its entries are written, and an entry removed by mistake costs that
// connection its acceleration (its messages take the stack), never data.
func (n *Node) Sweep() (Swept, error) {
	var s Swept
	var (
		k     meshSockKey
		v     meshProxyVal
		stale []meshSockKey
	)
	usage := map[uint64]int64{}
	it := n.maps.SockProxyMap.Iterate()
	for it.Next(&k, &v) {
		if n.directionStale(&k, &v) != live {
			stale = append(stale, k)
		} else {
			usage[payer(&v)]++
		}
	}
	if err := it.Err(); err != nil {
		return s, fmt.Errorf("scan sock_proxy_map: %w", err)
	}
	for _, key := range stale {
		// A new socket may have taken the tuple, or a new pair been
		// recorded under it, meanwhile.
		if err := n.maps.SockProxyMap.Lookup(&key, &v); err != nil {
			continue
		}
		why := n.directionStale(&key, &v)
		if why == live {
			continue
		}
		if deleted, err := deleteIfPresent(n.maps.SockProxyMap, key); err != nil {
			return s, err
		} else if deleted {
			s.Directions++
			if why == peerGone {
				s.PeerGone++
			}
		}
	}

	var (
		e       meshEndpointKey
		h       meshHelperVal
		pending []meshEndpointKey
	)
	// A registration of an untrusted reader (HELPER_UNTRUSTED) is in no
	// socket map; it lives for its connection's handshake, or until the
	// first acknowledged data when the peer is remote. One found by two
	// sweeps in a row is stale.
	untrusted := map[meshHelperVal]bool{}
	hit := n.maps.SockHelperMap.Iterate()
	for hit.Next(&e, &h) {
		switch {
		case h.Flags&helperUntrusted != 0 && n.untrustedSeen[h]:
			pending = append(pending, e)
		case h.Flags&helperUntrusted != 0:
			untrusted[h] = true
			usage[h.Pod]++
		case !n.inSocketMap(n.maps.SockOpsMap, &h.Key):
			pending = append(pending, e)
		default:
			usage[h.Pod]++
		}
	}
	n.untrustedSeen = untrusted
	if err := hit.Err(); err != nil {
		return s, fmt.Errorf("scan sock_helper_map: %w", err)
	}
	for _, key := range pending {
		// Delete only if the entry is still the stale socket's: a new
		// socket may have registered the endpoint meanwhile.
		var cur meshHelperVal
		if err := n.maps.SockHelperMap.Lookup(key, &cur); err != nil ||
			cur.Flags&helperUntrusted == 0 && n.inSocketMap(n.maps.SockOpsMap, &cur.Key) {
			continue
		}
		if deleted, err := deleteIfPresent(n.maps.SockHelperMap, key); err != nil {
			return s, err
		} else if deleted {
			s.Pending++
		}
	}
	return s, n.recount(usage)
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
func (n *Node) directionStale(k *meshSockKey, v *meshProxyVal) int {
	switch {
	case !n.inSocketMaps(k):
		return ownGone
	case !n.inSocketMaps(&v.Peer):
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

// recount sets each attached pod's usage count to what the scan found. It
// races with the data path's own increments, so a count may be off by the
// connections made during the scan, until the next sweep.
func (n *Node) recount(usage map[uint64]int64) error {
	var (
		pod  uint64
		cur  int64
		pods []uint64
	)
	it := n.maps.PodUsage.Iterate()
	for it.Next(&pod, &cur) {
		if cur != usage[pod] {
			pods = append(pods, pod)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("scan pod_usage: %w", err)
	}
	for _, p := range pods {
		err := n.maps.PodUsage.Update(p, usage[p], ebpf.UpdateExist)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("recount pod_usage: %w", err)
		}
	}
	return nil
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

// SweepEvery runs [Node.Sweep] every interval until ctx is done, and
// reports each result (or error) to report, which may be nil.
func (n *Node) SweepEvery(ctx context.Context, interval time.Duration, report func(Swept, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s, err := n.Sweep()
			if report != nil {
				report(s, err)
			}
		}
	}
}
