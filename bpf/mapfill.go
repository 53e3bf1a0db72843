package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

// MapFill reports the entries of the maps of [MapFillNames], at a cost
// that does not grow with the connections (docs/design.md, "Cost of the
// node state"):
//
//   - sock_proxy_map, sock_helper_map: the kept counts (mesh_fill), moved
//     by every insert and delete that succeeds, in the program run or the
//     sweep's call that made it;
//   - sock_ops_map, sock_rx_map: the kernel's own count of each socket
//     hash, which follows its unlinks of closing sockets too;
//   - sock_param_map, pod_usage: a walk of their keys, one per pod (at most
//     their 4,096 entries).
func (n *Node) MapFill() ([]MapFill, error) {
	f, err := n.readFill()
	if err != nil {
		return nil, err
	}
	kept := map[string]int{
		meshMapSockProxyMap: f.proxy, meshMapSockHelperMap: f.helper,
		meshMapSockOpsMap: f.sockets, meshMapSockRxMap: f.targets,
	}
	v := reflect.ValueOf(&n.maps).Elem()
	var out []MapFill
	for _, ff := range fillFields() {
		m, _ := v.Field(ff.index).Interface().(*ebpf.Map)
		if m == nil {
			return nil, fmt.Errorf("count entries of %s: map not open", ff.name)
		}
		count, ok := kept[ff.name]
		if !ok {
			if count, err = countEntries(m); err != nil {
				return nil, fmt.Errorf("count entries of %s: %w", ff.name, err)
			}
		}
		out = append(out, MapFill{Name: ff.name, Entries: count, MaxEntries: m.MaxEntries()})
	}
	return out, nil
}

// fill is one reading of the connection maps' fill.
type fill struct {
	// words are the kept count words (enum fill_kept), in the format of
	// a usage word: the count and a generation.
	words                           [meshFillKeptFILL_KEPT]uint64
	proxy, helper, sockets, targets int
}

// pinSockets is the pin name under progs/ of mesh_sockets, the program
// user space runs to read how many sockets a socket hash holds.
const pinSockets = "sockets"

// readFill reads the kept counts, each in one load (mesh_usage,
// FILL_READ), and the socket hashes' counts (mesh_sockets). A count is
// clamped to [0, capacity]: a delete uncounted for a moment, or a drift
// before the sweep's recount corrects it, never shows as a negative fill.
func (n *Node) readFill() (fill, error) {
	prog, err := n.usageProgram()
	if err != nil {
		return fill{}, err
	}
	op := meshUsageOp{Op: uint32(meshUsageOpKindFILL_READ)}
	if _, err := prog.Run(&ebpf.RunOptions{Context: op, ContextOut: &op}); err != nil {
		return fill{}, fmt.Errorf("read the maps' fill: run %s: %w", pinUsage, err)
	}
	if op.Found == 0 {
		return fill{}, errors.New("read the maps' fill: mesh_fill has no element")
	}
	clamp := func(v int64, m *ebpf.Map) int { return int(max(0, min(v, int64(m.MaxEntries())))) }
	f := fill{
		words:  op.Fills,
		proxy:  clamp(usedOf(op.Fills[meshFillKeptFILL_PROXY]), n.maps.SockProxyMap),
		helper: clamp(usedOf(op.Fills[meshFillKeptFILL_HELPER]), n.maps.SockHelperMap),
	}
	for i, out := range []*int{&f.sockets, &f.targets} {
		count, err := n.socketCount(uint64(i))
		if err != nil {
			return fill{}, err
		}
		*out = clamp(int64(count), n.maps.SockOpsMap)
	}
	return f, nil
}

// socketCount runs mesh_sockets: the sockets in sock_ops_map (which 0) or
// sock_rx_map (1).
func (n *Node) socketCount(which uint64) (uint32, error) {
	n.socketsOnce.Do(func() {
		n.sockets, n.socketsErr = ebpf.LoadPinnedProgram(n.progPin(pinSockets), nil)
		if errors.Is(n.socketsErr, os.ErrNotExist) {
			n.socketsErr = fmt.Errorf("%w: node state without the %s program (created by an earlier build of this layout)",
				n.socketsErr, pinSockets)
		}
	})
	if n.socketsErr != nil {
		return 0, n.socketsErr
	}
	ret, err := n.sockets.Run(&ebpf.RunOptions{Context: [1]uint64{which}})
	if err != nil {
		return 0, fmt.Errorf("count the sockets of a socket map: run %s: %w", pinSockets, err)
	}
	return ret, nil
}

// fillAdd adds add to the kept count of which (meshFillKept), after user
// space removed entries from its map.
func (n *Node) fillAdd(which meshFillKept, add int64) error {
	if add == 0 {
		return nil
	}
	prog, err := n.usageProgram()
	if err != nil {
		return err
	}
	op := meshUsageOp{Op: uint32(meshUsageOpKindFILL_ADD), Fill: uint32(which), N: add}
	if _, err := prog.Run(&ebpf.RunOptions{Context: op, ContextOut: &op}); err != nil {
		return fmt.Errorf("count a removed entry: run %s: %w", pinUsage, err)
	}
	if op.Found == 0 {
		return fmt.Errorf("count a removed entry: no kept count %d", which)
	}
	return nil
}

// initFill writes the kept counts of a new state: nothing in either map,
// plus the bias of the word format.
func (n *Node) initFill() error {
	for i := range uint32(meshFillKeptFILL_KEPT) {
		var w uint64
		if err := n.maps.MeshFill.Lookup(i, &w); err != nil {
			return fmt.Errorf("read the kept count %d: %w", i, err)
		}
		if w != 0 {
			continue // a creation interrupted after it wrote them
		}
		if err := n.maps.MeshFill.Update(i, newUsageWord(), ebpf.UpdateExist); err != nil {
			return fmt.Errorf("write the kept count %d: %w", i, err)
		}
	}
	return nil
}

// countEntries walks the keys of m (BPF_MAP_GET_NEXT_KEY, which every hash
// map type supports, socket hashes included), at most twice its capacity.
// Under churn a count is approximate: a key deleted during the walk
// restarts it, so the count is capped at the map's capacity.
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

// socketsSpec is mesh_sockets as the embedded object holds it (parsed
// once), for the states of other layouts, which may lack the program.
var socketsSpec = sync.OnceValues(func() (*ebpf.ProgramSpec, error) {
	spec, err := loadMesh()
	if err != nil {
		return nil, err
	}
	return spec.Programs[meshProgMeshSockets], nil
})

// countSockets counts the sockets in the socket maps of the state in dir
// (another layout's, during an upgrade): the kernel's count of each
// socket hash, through this binary's mesh_sockets loaded against it for
// the call, or a walk of its keys if the program cannot be.
func countSockets(dir string) (int, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "maps"))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, e := range ents {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", e.Name()), nil)
		if err != nil {
			continue
		}
		if t := m.Type(); t == ebpf.SockHash || t == ebpf.SockMap {
			count, err := socketsOf(m)
			if err != nil {
				count, err = countEntries(m)
			}
			if err != nil {
				m.Close()
				return 0, fmt.Errorf("count sockets of %s: %w", e.Name(), err)
			}
			total += count
		}
		m.Close()
	}
	return total, nil
}

// socketsOf reads the kernel's count of the socket hash m with a copy of
// mesh_sockets whose first map is m.
func socketsOf(m *ebpf.Map) (int, error) {
	if m.Type() != ebpf.SockHash {
		return 0, fmt.Errorf("%v is not a socket hash", m)
	}
	ps, err := socketsSpec()
	if err != nil {
		return 0, err
	}
	ps = ps.Copy()
	for _, sym := range []string{meshMapSockOpsMap, meshMapSockRxMap} {
		if err := ps.Instructions.AssociateMap(sym, m); err != nil {
			return 0, err
		}
	}
	prog, err := ebpf.NewProgram(ps)
	if err != nil {
		return 0, err
	}
	defer prog.Close()
	count, err := prog.Run(&ebpf.RunOptions{Context: [1]uint64{0}})
	return int(count), err
}
