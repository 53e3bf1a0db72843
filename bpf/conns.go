package bpf

import (
	"fmt"
	"net/netip"
)

// Direction is one direction of an accelerated pair: From sends, To
// receives.
type Direction struct {
	From, To netip.AddrPort
	// Netns and ToNetns are the network namespace cookies of the sender's
	// and the receiver's sockets.
	Netns, ToNetns uint64
	FromPod, ToPod uint64 // pod cgroup ids
	FromUID, ToUID uint32
	Connecting     bool // From is the connecting side
	Redirect       bool // data may be redirected (else it takes the stack)
	// Held is set while flow control keeps the direction on the stack
	// because its reader fell behind; Holds counts such episodes.
	Held  bool
	Holds uint32
	// Backlog is the reader's unread bytes seen at the direction's last
	// message (0 once the reader is gone).
	Backlog uint32
	// PeerGone is set when the reader recorded at pairing is gone although
	// the direction is still recorded: it closed while its pod was
	// detached (no close callback ran). Its sender found it so (the
	// direction takes the stack for good), or the reader has left both
	// socket maps. The sweep removes such a direction.
	PeerGone        bool
	Bytes, Messages uint64
}

// Directions lists the recorded pair directions. Released ones
// (PROXY_RELEASED: drained, or their reader gone) are no longer directions
// of a pair; their entries only keep their socket charged, and are not
// listed.
func (n *Node) Directions() ([]Direction, error) {
	var (
		k   meshSockKey
		v   meshProxyVal
		out []Direction
	)
	it := n.maps.SockProxyMap.Iterate()
	for it.Next(&k, &v) {
		if v.Flags&proxyReleased != 0 {
			continue
		}
		gone := v.Flags&proxyPeerGone != 0 || !n.inSocketMaps(&v.Peer)
		if gone {
			v.Backlog = 0
		}
		out = append(out, Direction{
			From:       netip.AddrPortFrom(keyAddr(k.LocalIp), uint16(k.LocalPort)),
			To:         netip.AddrPortFrom(keyAddr(v.Peer.LocalIp), uint16(v.Peer.LocalPort)),
			Netns:      k.Netns,
			ToNetns:    v.Peer.Netns,
			FromPod:    v.Pod,
			ToPod:      v.PeerPod,
			FromUID:    v.Uid,
			ToUID:      v.PeerUid,
			Connecting: v.Flags&proxyActive != 0,
			Redirect:   v.Flags&proxyRedirect != 0,
			Held:       v.Flags&proxyHeld != 0,
			Holds:      v.Holds,
			Backlog:    v.Backlog,
			PeerGone:   gone,
			Bytes:      v.Bytes,
			Messages:   v.Msgs,
		})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read sock_proxy_map: %w", err)
	}
	return out, nil
}

// Flags of struct proxy_val, generated from c/mesh_accel.h's enum.
const (
	proxyRedirect = uint32(meshProxyFlagPROXY_REDIRECT)
	proxyActive   = uint32(meshProxyFlagPROXY_ACTIVE)
	proxyHeld     = uint32(meshProxyFlagPROXY_HELD)
	proxyPeerGone = uint32(meshProxyFlagPROXY_PEER_GONE)
	proxyReleased = uint32(meshProxyFlagPROXY_RELEASED)
)

// Usage counts the entries of the connection maps.
type Usage struct {
	// Sockets are in sock_ops_map (their writes run sk_msg), Targets in
	// sock_rx_map (they receive redirected data); a socket can be in both.
	// Directions are the entries of sock_proxy_map (released ones
	// included), Pending the registrations waiting for a local peer.
	Sockets, Targets, Directions, Pending, Pods int
	Capacity                                    uint32
	// Share is the node-wide part of the quota: every pod's guaranteed
	// share and the pool they share beyond it.
	Share Share
}

// Usage counts the entries of the connection maps, from their kept counts
// (see [Node.MapFill]: no scan of a connection map).
func (n *Node) Usage() (Usage, error) {
	u := Usage{Capacity: n.maps.SockProxyMap.MaxEntries()}
	var err error
	if u.Share, err = n.Share(); err != nil {
		return u, err
	}
	f, err := n.readFill()
	if err != nil {
		return u, err
	}
	u.Sockets, u.Targets, u.Directions, u.Pending = f.sockets, f.targets, f.proxy, f.helper
	if u.Pods, err = countEntries(n.maps.SockParamMap); err != nil {
		return u, fmt.Errorf("scan %v: %w", n.maps.SockParamMap, err)
	}
	return u, nil
}
