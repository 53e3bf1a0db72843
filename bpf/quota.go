package bpf

// The quota: how the node-wide connection maps are shared among pods
// (docs/design.md, "Per-pod quota and fair share").
//
// A pod's outgoing connections are charged for every entry they hold (a
// pending registration, then both directions of each pair; the connecting
// side pays). A pod may always hold its guaranteed share G; past it, up to
// its own quota, it borrows from a pool shared by all pods, which holds
// P = C - M*G entries (C the maps' capacity, M the pods the guaranteed
// shares are kept for). The data path admits an entry past the share only
// while the sum over pods of what they hold beyond G stays within P, so
//
//	sum over pods of entries <= M*G + P = C
//
// and no pod, nor any number of pods, can push another below G as long as
// at most M pods are attached. Defaults: G = C/512 (128 entries, 64
// accelerated connections, of 65,536), M = 256 (fewer for small maps), so
// P is half the maps.

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// DefaultGuaranteedPods is how many pods the guaranteed shares are kept
// for, above the usual 110 to 250 pods of a node.
const DefaultGuaranteedPods = 256

// DefaultRegistrationTTL is how long a connecting socket's registration
// may wait for its local peer before the sweep releases it (the socket
// then stays on the stack): a local peer pairs within the handshake.
const DefaultRegistrationTTL = 30 * time.Second

// pinUsage is the pin name under progs/ of mesh_usage, the program user
// space runs to read and change usage counts as the data path does.
const pinUsage = "usage"

// Share is the node-wide part of the quota, fixed when the state is
// created.
type Share struct {
	// Capacity is the entries of each connection map.
	Capacity uint32
	// Guaranteed is what every pod can always hold (up to its quota),
	// for as many as GuaranteedPods pods.
	Guaranteed, GuaranteedPods uint32
	// Pool is what pods share beyond their guaranteed share:
	// Capacity - GuaranteedPods*Guaranteed. Borrowed is how much of it
	// they hold now.
	Pool     uint32
	Borrowed int64
}

// PodUsage is what a pod's outgoing connections hold of the connection
// maps.
type PodUsage struct {
	// Entries are its pending registrations and the directions of its
	// pairs (both directions of a connection it opened).
	Entries int64
	// Quota is the most it may hold (PodConfig.Quota); past the node's
	// guaranteed share it gets entries only while the shared pool has
	// room.
	Quota uint32
}

// shareFor computes the share of a state whose maps hold capacity entries,
// from the options. By default the guaranteed shares take half the maps:
// G = C/512 (at least 2: a pair takes two entries), kept for
// DefaultGuaranteedPods pods, or fewer when the maps are small, and the
// other half is the shared pool. Options given are kept, but the
// guaranteed shares never take more than the maps hold.
func shareFor(capacity, guaranteed, pods uint32) meshShareState {
	if guaranteed == 0 {
		guaranteed = capacity / 512
	}
	// A pair takes two entries; less would guarantee nothing.
	guaranteed = max(guaranteed, 2)
	if pods == 0 {
		pods = min(DefaultGuaranteedPods, capacity/(2*guaranteed))
	}
	pods = max(pods, 1)
	if uint64(pods)*uint64(guaranteed) > uint64(capacity) {
		guaranteed = capacity / pods
		if guaranteed < 2 {
			guaranteed, pods = 2, max(capacity/2, 1)
		}
	}
	pool := int64(capacity) - int64(pods)*int64(guaranteed)
	return meshShareState{Guaranteed: guaranteed, Pods: pods, Pool: uint32(max(pool, 0)), Capacity: capacity}
}

// initShare writes the share of a new state, unless it has one (a creation
// interrupted after it wrote it).
func (n *Node) initShare(o Options) error {
	var cur meshShareState
	if err := n.maps.MeshShare.Lookup(uint32(0), &cur); err != nil {
		return fmt.Errorf("read the quota's share: %w", err)
	}
	if cur.Capacity != 0 {
		return nil
	}
	s := shareFor(n.maps.SockProxyMap.MaxEntries(), o.GuaranteedShare, o.GuaranteedPods)
	if err := n.maps.MeshShare.Update(uint32(0), s, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("write the quota's share: %w", err)
	}
	return nil
}

// Share reads the node-wide part of the quota.
func (n *Node) Share() (Share, error) {
	var s meshShareState
	if err := n.maps.MeshShare.Lookup(uint32(0), &s); err != nil {
		return Share{}, fmt.Errorf("read the quota's share: %w", err)
	}
	return Share{Capacity: s.Capacity, Guaranteed: s.Guaranteed, GuaranteedPods: s.Pods, Pool: s.Pool,
		Borrowed: s.Borrowed}, nil
}

// Usage words (struct usage_val): the entries held plus a bias in the low
// 32 bits, a generation in the high 32 (enum usage_word).
const (
	usageBias     = int64(1) << meshUsageWordUSAGE_BIAS_SHIFT
	usageGenShift = uint(meshUsageWordUSAGE_GEN_SHIFT)
)

// newUsageWord is the word of a pod that holds nothing.
func newUsageWord() uint64 { return uint64(usageBias) }

// usedOf is the entries a usage word counts.
func usedOf(w uint64) int64 { return int64(w&0xffffffff) - usageBias }

// genOf is the generation of a usage word: every entry the data path added
// or gave back since the pod's count was created, modulo 2^32.
func genOf(w uint64) uint32 { return uint32(w >> usageGenShift) }

// podUsage reads a pod's usage count (0 without one).
func (n *Node) podUsage(cgID uint64) int64 {
	var u meshUsageVal
	if err := n.maps.PodUsage.Lookup(cgID, &u); err != nil {
		return 0
	}
	return usedOf(u.Word)
}

// usageProgram is mesh_usage, loaded from its pin at first use (the CNI
// plugin's ADD never needs it).
func (n *Node) usageProgram() (*ebpf.Program, error) {
	n.usageOnce.Do(func() {
		n.usage, n.usageErr = ebpf.LoadPinnedProgram(n.progPin(pinUsage), nil)
		if errors.Is(n.usageErr, os.ErrNotExist) {
			n.usageErr = fmt.Errorf("%w: node state without the %s program (created by an earlier build of this layout)",
				n.usageErr, pinUsage)
		}
	})
	return n.usage, n.usageErr
}

// errNoUsage is returned for a pod without a usage count.
var errNoUsage = errors.New("pod has no usage count")

// usageOp runs mesh_usage: with add 0 it reads the pod's usage word (in one
// load; the generation does not move), else it adds add entries (negative:
// gives them back) as the data path does. It returns the word, before the
// change when it made one.
func (n *Node) usageOp(pod uint64, add int64) (uint64, error) {
	prog, err := n.usageProgram()
	if err != nil {
		return 0, err
	}
	op := meshUsageOp{Pod: pod, N: add, Op: uint32(meshUsageOpKindUSAGE_READ)}
	if add != 0 {
		op.Op = uint32(meshUsageOpKindUSAGE_ADD)
	}
	if _, err := prog.Run(&ebpf.RunOptions{Context: op, ContextOut: &op}); err != nil {
		return 0, fmt.Errorf("run %s: %w", pinUsage, err)
	}
	if op.Found == 0 {
		return 0, errNoUsage
	}
	return op.Word, nil
}

// giveBack gives entries back to the pod that was charged for them, after
// user space removed them from their map. A pod without a usage count
// (gone) needs nothing back.
func (n *Node) giveBack(pod uint64, entries int64) error {
	if pod == 0 || entries == 0 {
		return nil
	}
	_, err := n.usageOp(pod, -entries)
	if errors.Is(err, errNoUsage) {
		return nil
	}
	return err
}

// usageWords reads the usage word of every pod with a usage count, each
// in one load.
func (n *Node) usageWords() (map[uint64]uint64, error) {
	var (
		pod  uint64
		u    meshUsageVal
		pods []uint64
	)
	it := n.maps.PodUsage.Iterate()
	for it.Next(&pod, &u) {
		pods = append(pods, pod)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("scan pod_usage: %w", err)
	}
	out := make(map[uint64]uint64, len(pods))
	for _, p := range pods {
		w, err := n.usageOp(p, 0)
		if errors.Is(err, errNoUsage) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[p] = w
	}
	return out, nil
}

// sweepTotals are the sums of every Sweep of this handle.
type sweepTotals struct {
	mu sync.Mutex
	s  Swept
}

func (t *sweepTotals) add(s Swept) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.add(s)
}

// add adds what o did to s.
func (s *Swept) add(o Swept) {
	s.Directions += o.Directions
	s.PeerGone += o.PeerGone
	s.Pending += o.Pending
	s.Expired += o.Expired
	s.Recounted += o.Recounted
	s.Refilled += o.Refilled
}

// SweepTotals sums what every Sweep of this handle removed (the installer
// exports it).
func (n *Node) SweepTotals() Swept {
	n.totals.mu.Lock()
	defer n.totals.mu.Unlock()
	return n.totals.s
}
