package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SetPodEnabled switches acceleration of the pod's new connections on or
// off, keeping the rest of its configuration.
func (n *Node) SetPodEnabled(id string, on bool) error {
	cgID, err := n.podCgroupID(id)
	if err != nil {
		return err
	}
	var pc meshPodConfig
	if err := n.maps.SockParamMap.Lookup(cgID, &pc); err != nil {
		return fmt.Errorf("read configuration of pod %s: %w", id, err)
	}
	if on {
		pc.Flags &^= podDisabled
	} else {
		pc.Flags |= podDisabled
	}
	return n.putPodConfig(cgID, &pc)
}

// Drain moves recorded pairs back to the normal stack: it releases the
// pair directions whose sender or receiver is in the pod with cgroup id
// podCgroup (0: every pair) and returns how many it released. It is safe
// on live traffic: a message already redirected sits in the receiver's
// redirect queue, which the receiver reads before the normal queue, and a
// drained direction never returns to redirection. A released direction
// (replaced whole, PROXY_RELEASED) keeps its socket, which stays in the
// socket maps until it closes, charged to its pod's quota; its close, or
// the sweep, removes it.
func (n *Node) Drain(podCgroup uint64) (int, error) {
	var (
		k    meshSockKey
		v    meshProxyVal
		keys []meshSockKey
	)
	it := n.maps.SockProxyMap.Iterate()
	for it.Next(&k, &v) {
		if v.Flags&proxyReleased == 0 && (podCgroup == 0 || v.Pod == podCgroup || v.PeerPod == podCgroup) {
			keys = append(keys, k)
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("scan sock_proxy_map: %w", err)
	}
	removed := 0
	for _, key := range keys {
		if err := n.maps.SockProxyMap.Lookup(&key, &v); err != nil || v.Flags&proxyReleased != 0 {
			continue
		}
		err := n.maps.SockProxyMap.Update(&key, releasedDirection(&v), ebpf.UpdateExist)
		if err == nil {
			removed++
		} else if !errors.Is(err, ebpf.ErrKeyNotExist) {
			return removed, fmt.Errorf("drain: %w", err)
		}
	}
	return removed, nil
}
