package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// Socket owners across an upgrade that changed struct sock_owner.
//
// States whose struct sock_owner is the same share one owner storage
// (openOwnerMap), so the sockets created under an older release are known
// to the new programs. When the struct changed, a socket created under the
// older release (a server's listener above all, which lives as long as its
// server) has its owner only in the older storage, and so has every socket
// it accepts (the storage is cloned): without more, each such connection
// would be refused (rejected_no_owner) until the pod restarts. So each
// state keeps a handle on the owner storage of the older release it
// upgraded from, pinned as maps/older_owner_map, and its sockops program
// takes an owner over from there, translated member by member, when a
// socket has none of its own (owner_of in c/mesh_accel.c). The
// translation's offsets come from the older storage's BTF and are
// constants of the loaded programs.
//
// A state created with no older storage of another format on the node
// pins an empty storage of a placeholder type, which turns the fallback
// off. The pin lives as long as the state: after the older state is
// removed, its listeners may still be serving.

const olderOwnersName = "older_owner_map"

// olderOwners returns the older owner storage of this state: the pinned
// one, or, when none is pinned yet (a state of this layout created by a
// build without it, or a new state), the owner storage of a state of
// another layout on the node that is not own, or else an empty one, which
// it pins. It runs under the state's lock.
func (n *Node) olderOwners(spec *ebpf.MapSpec, own *ebpf.Map) (*ebpf.Map, error) {
	pin := filepath.Join(n.mapsDir(), olderOwnersName)
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("load pinned map %s: %w", pin, err)
	}
	m, err = n.siblingOwners(own)
	if err != nil {
		return nil, err
	}
	if m == nil {
		ms := spec.Copy()
		ms.Pinning = ebpf.PinNone
		if m, err = ebpf.NewMap(ms); err != nil {
			return nil, fmt.Errorf("create the empty older owner storage: %w", err)
		}
	}
	if err := pinMapAgain(m, pin); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// siblingOwners returns the owner storage of a state of another layout
// that is not own, if any.
func (n *Node) siblingOwners(own *ebpf.Map) (*ebpf.Map, error) {
	for _, dir := range n.siblings() {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", ownerMapName), nil)
		if err != nil {
			continue // a state half created or half removed
		}
		if same, err := sameMap(m, own); err != nil || same {
			m.Close()
			if err != nil {
				return nil, err
			}
			continue
		}
		return m, nil
	}
	return nil, nil
}

// sameMap reports whether a and b are the same kernel map.
func sameMap(a, b *ebpf.Map) (bool, error) {
	ia, err := a.Info()
	if err != nil {
		return false, err
	}
	ib, err := b.Info()
	if err != nil {
		return false, err
	}
	idA, okA := ia.ID()
	idB, okB := ib.ID()
	return okA && okB && idA == idB, nil
}

// pinMapAgain pins m at p, keeping any pin m was loaded from (Map.Pin of a
// map loaded from a pin moves that pin).
func pinMapAgain(m *ebpf.Map, p string) error {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("pin %s: duplicate the map's descriptor: %w", p, err)
	}
	dup, err := ebpf.NewMapFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return fmt.Errorf("pin %s: %w", p, err)
	}
	defer dup.Close()
	_ = os.Remove(p) // leftover of an interrupted creation
	return dup.Pin(p)
}

// useOlderOwners makes spec load against older (olderOwners): the map's
// size and flags, and the translation's offsets, or the fallback turned
// off when older's value is not a struct sock_owner (the placeholder) or
// cannot be translated (TestOwnerOffsets keeps this release's struct
// translatable).
func useOlderOwners(spec *ebpf.CollectionSpec, older *ebpf.Map) error {
	ms := spec.Maps[olderOwnersName]
	ms.ValueSize, ms.Flags = older.ValueSize(), older.Flags()
	offsets := map[string]int32{"uid": -1, "gid": -1, "pod": -1, "seen": -1}
	if was, err := mapValueType(older, "sock_owner"); err == nil {
		if o, err := ownerOffsets(spec.Maps[ownerMapName].Value, was, offsets); err == nil {
			offsets = o
		}
	}
	for member, off := range offsets {
		v, ok := spec.Variables["older_"+member]
		if !ok {
			return fmt.Errorf("no older_%s in the BPF object", member)
		}
		if err := v.Set(off); err != nil {
			return fmt.Errorf("older_%s: %w", member, err)
		}
	}
	return nil
}

// ownerOffsets sets, for each member named in offsets, where it sits in
// was (an older struct sock_owner), or -1. A member of another size than
// in cur is an error (the data path copies bytes), and an older struct
// without pod gives no owner at all (every offset -1).
func ownerOffsets(cur, was btf.Type, offsets map[string]int32) (map[string]int32, error) {
	cs, ok1 := btf.UnderlyingType(cur).(*btf.Struct)
	ws, ok2 := btf.UnderlyingType(was).(*btf.Struct)
	if !ok1 || !ok2 {
		return nil, errors.New("sock_owner is not a struct")
	}
	out := make(map[string]int32, len(offsets))
	for name := range offsets {
		out[name] = -1
	}
	for _, cm := range cs.Members {
		if _, ok := out[cm.Name]; !ok {
			if cm.Name != "pad" {
				return nil, fmt.Errorf("sock_owner member %s is not taken over from an older release (c/mesh_accel.c, owner_of)", cm.Name)
			}
			continue
		}
		for _, wm := range ws.Members {
			if wm.Name != cm.Name {
				continue
			}
			want, err := btf.Sizeof(cm.Type)
			if err != nil {
				return nil, err
			}
			got, err := btf.Sizeof(wm.Type)
			if err != nil {
				return nil, err
			}
			if got != want || wm.BitfieldSize != 0 {
				return nil, fmt.Errorf("older sock_owner member %s is %d bytes, this release's %d", cm.Name, got, want)
			}
			out[cm.Name] = int32(wm.Offset.Bytes())
		}
	}
	if out["pod"] < 0 {
		for name := range out {
			out[name] = -1
		}
	}
	return out, nil
}
