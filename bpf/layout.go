package bpf

// The formats of the data path's maps, as their BTF describes them: what
// TestLayoutVersionCoversMaps records per LayoutVersion, and how a value of
// an older layout is translated into this one by member names (upgrade.go).

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// mapLayout describes a map's format: type, flags, key and value types
// (member names, offsets, sizes). Two maps of the same description hold
// the same data in the same places.
func mapLayout(m *ebpf.MapSpec) string {
	return fmt.Sprintf("%v/%d/%d/%d/%s/%s", m.Type, m.Flags, m.KeySize, m.ValueSize,
		typeLayout(m.Key), typeLayout(m.Value))
}

func typeLayout(t btf.Type) string {
	switch t := btf.UnderlyingType(t).(type) {
	case nil:
		return "-"
	case *btf.Int:
		return fmt.Sprintf("i%d%v", t.Size, t.Encoding)
	case *btf.Enum:
		return fmt.Sprintf("e%d", t.Size)
	case *btf.Pointer:
		return "p"
	case *btf.Array:
		return fmt.Sprintf("[%d]%s", t.Nelems, typeLayout(t.Type))
	case *btf.Struct:
		return "struct " + t.Name + membersLayout(t.Members)
	case *btf.Union:
		return "union " + t.Name + membersLayout(t.Members)
	default:
		return fmt.Sprintf("%T", t)
	}
}

func membersLayout(ms []btf.Member) string {
	var b strings.Builder
	b.WriteString("{")
	for _, m := range ms {
		fmt.Fprintf(&b, "%s@%d:%d:%s;", m.Name, m.Offset, m.BitfieldSize, typeLayout(m.Type))
	}
	b.WriteString("}")
	return b.String()
}

// Layout describes the format of every pinned map of this binary's data path
// (and the size of its arrays, the counters' among them), for the test that
// makes a map change without a LayoutVersion change fail.
func Layout() (string, error) {
	spec, err := loadMesh()
	if err != nil {
		return "", err
	}
	// Only pinned maps are state that binaries share: a map not pinned
	// (global variables, the older owner storage, which is replaced at
	// load) belongs to the programs loaded with it.
	names := make([]string, 0, len(spec.Maps))
	for name, m := range spec.Maps {
		if m.Pinning != ebpf.PinNone {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		m := spec.Maps[name]
		fmt.Fprintf(&b, "%s %s", name, mapLayout(m))
		// An array's size is fixed by the data path (mesh_counters has
		// one element per counter of enum counter): a pinned array of
		// another size does not load.
		if m.Type == ebpf.Array || m.Type == ebpf.PerCPUArray {
			fmt.Fprintf(&b, " [%d]", m.MaxEntries)
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

// convertValue fills dst, a value of type dt, from src, a value of type
// st, by member name: what both types have is copied (integers widened or
// narrowed, arrays to the shorter length), what only dt has stays zero.
func convertValue(dst []byte, dt btf.Type, src []byte, st btf.Type) error {
	dt, st = btf.UnderlyingType(dt), btf.UnderlyingType(st)
	switch d := dt.(type) {
	case *btf.Struct:
		s, ok := st.(*btf.Struct)
		if !ok {
			return fmt.Errorf("struct %s was %T", d.Name, st)
		}
		return convertMembers(dst, d.Members, src, s.Members)
	case *btf.Union:
		s, ok := st.(*btf.Union)
		if !ok {
			return fmt.Errorf("union %s was %T", d.Name, st)
		}
		return convertMembers(dst, d.Members, src, s.Members)
	case *btf.Array:
		s, ok := st.(*btf.Array)
		if !ok {
			return fmt.Errorf("array was %T", st)
		}
		dsz, err := btf.Sizeof(d.Type)
		if err != nil {
			return err
		}
		ssz, err := btf.Sizeof(s.Type)
		if err != nil {
			return err
		}
		for i := 0; i < int(min(d.Nelems, s.Nelems)); i++ {
			if (i+1)*dsz > len(dst) || (i+1)*ssz > len(src) {
				return errors.New("array past its value")
			}
			if err := convertValue(dst[i*dsz:(i+1)*dsz], d.Type, src[i*ssz:(i+1)*ssz], s.Type); err != nil {
				return err
			}
		}
		return nil
	case *btf.Int, *btf.Enum:
		switch st.(type) {
		case *btf.Int, *btf.Enum:
		default:
			return fmt.Errorf("integer was %T", st)
		}
		// Little endian: the low bytes first.
		clear(dst)
		copy(dst, src[:min(len(dst), len(src))])
		return nil
	default:
		return fmt.Errorf("cannot convert %T", dt)
	}
}

func convertMembers(dst []byte, dms []btf.Member, src []byte, sms []btf.Member) error {
	for _, dm := range dms {
		var sm *btf.Member
		for i := range sms {
			if sms[i].Name == dm.Name && dm.Name != "" {
				sm = &sms[i]
			}
		}
		if sm == nil {
			continue
		}
		if dm.BitfieldSize != 0 || sm.BitfieldSize != 0 {
			return fmt.Errorf("member %s: bit fields are not converted", dm.Name)
		}
		dsz, err := btf.Sizeof(dm.Type)
		if err != nil {
			return err
		}
		ssz, err := btf.Sizeof(sm.Type)
		if err != nil {
			return err
		}
		do, so := int(dm.Offset.Bytes()), int(sm.Offset.Bytes())
		if do+dsz > len(dst) || so+ssz > len(src) {
			return fmt.Errorf("member %s past its value", dm.Name)
		}
		if err := convertValue(dst[do:do+dsz], dm.Type, src[so:so+ssz], sm.Type); err != nil {
			return fmt.Errorf("member %s: %w", dm.Name, err)
		}
	}
	return nil
}

// mapValueType finds the type named name in the BTF the kernel holds for
// m (the data path that created m carried it).
func mapValueType(m *ebpf.Map, name string) (btf.Type, error) {
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	id, ok := info.BTFID()
	if !ok {
		return nil, errors.New("map has no BTF")
	}
	h, err := btf.NewHandleFromID(id)
	if err != nil {
		return nil, fmt.Errorf("BTF of the map: %w", err)
	}
	defer h.Close()
	spec, err := h.Spec(nil)
	if err != nil {
		return nil, fmt.Errorf("BTF of the map: %w", err)
	}
	var t btf.Type
	types, err := spec.AnyTypesByName(name)
	if err != nil {
		return nil, fmt.Errorf("type %s in the map's BTF: %w", name, err)
	}
	for _, c := range types {
		if _, ok := c.(*btf.Struct); ok {
			t = c
		}
	}
	if t == nil {
		return nil, fmt.Errorf("no struct %s in the map's BTF", name)
	}
	return t, nil
}

// readConverted reads key from old (whose values are struct name of
// another data path) and converts the value into out, a value of type
// name of this one.
func readConverted(old *ebpf.Map, key any, name string, newType btf.Type, out []byte) error {
	oldType, err := mapValueType(old, name)
	if err != nil {
		return err
	}
	raw := make([]byte, old.ValueSize())
	if err := old.Lookup(key, raw); err != nil {
		return err
	}
	return convertValue(out, newType, raw, oldType)
}
