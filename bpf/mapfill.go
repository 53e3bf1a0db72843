package bpf

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/cilium/ebpf"
)

// MapFill is how full one map of the node state is.
type MapFill struct {
	Name       string // the map's name, as pinned under maps/
	Entries    int
	MaxEntries uint32
}

// filledTypes are the map types whose entries come and go with pods and
// connections, and so can fill up; arrays, the ring buffer and socket
// storage cannot.
var filledTypes = map[ebpf.MapType]bool{
	ebpf.Hash: true, ebpf.LRUHash: true, ebpf.SockHash: true, ebpf.PerCPUHash: true,
}

// MapFillNames lists the maps [Node.MapFill] reports, in its order: every
// hash or socket-hash map of the node state, named by the generated
// objects (the C is the only source of the names).
func MapFillNames() []string {
	var out []string
	for _, f := range fillFields() {
		out = append(out, f.name)
	}
	return out
}

type fillField struct {
	name  string
	index int
}

// fillFields are the fields of meshMaps that MapFill reads, found in the
// map specs of the data path (parsed once: a scrape must not parse the
// object).
var fillFields = sync.OnceValue(func() []fillField {
	spec, err := loadMesh()
	if err != nil {
		panic(fmt.Sprintf("embedded BPF object: %v", err)) // generated and committed: cannot fail
	}
	var out []fillField
	t := reflect.TypeFor[meshMaps]()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("ebpf")
		if ms := spec.Maps[name]; ms != nil && filledTypes[ms.Type] {
			out = append(out, fillField{name, i})
		}
	}
	return out
})

// MapFill counts the entries of the maps of [MapFillNames] (a scan of each
// map's keys). Under churn a count is approximate: a key deleted during
// the scan restarts it, so the count is capped at the map's capacity.
func (n *Node) MapFill() ([]MapFill, error) {
	v := reflect.ValueOf(&n.maps).Elem()
	var out []MapFill
	for _, f := range fillFields() {
		m, _ := v.Field(f.index).Interface().(*ebpf.Map)
		if m == nil {
			return nil, fmt.Errorf("count entries of %s: map not open", f.name)
		}
		count, err := countEntries(m)
		if err != nil {
			return nil, fmt.Errorf("count entries of %s: %w", f.name, err)
		}
		out = append(out, MapFill{Name: f.name, Entries: count, MaxEntries: m.MaxEntries()})
	}
	return out, nil
}

// countEntries walks the keys of m (BPF_MAP_GET_NEXT_KEY, which every hash
// map type supports, socket hashes included), at most twice its capacity.
func countEntries(m *ebpf.Map) (int, error) {
	limit := int(m.MaxEntries())
	key := make([]byte, m.KeySize())
	count := 0
	err := m.NextKey(nil, key)
	for ; err == nil && count < 2*limit; err = m.NextKey(key, key) {
		count++
	}
	if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return 0, err
	}
	return min(count, limit), nil
}
