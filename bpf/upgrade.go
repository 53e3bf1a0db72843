package bpf

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// Upgrades. A node keeps its state across installer restarts, so a new
// release finds the state, programs and pod links of the one before, with
// connections running through them. Node.Upgrade brings the node to this
// binary's data path without touching a byte in flight:
//
//   - Same layout (LayoutVersion), other programs: this binary's programs are
//     loaded against the pinned maps and replace the pinned ones. The sk_msg
//     program attached to the socket map is replaced; a socket already in
//     the map keeps the program it joined with (the kernel takes it at
//     link time) until it closes, and new sockets get the new one. Every
//     pod's cgroup links are switched to the new sockops and sock_create
//     programs in place (BPF_LINK_UPDATE): no moment without a program,
//     none with two.
//   - Another layout (another LayoutVersion, or maps of another size: the
//     state's folder is named by Options.Layout): the state of the older
//     layout stays beside the new one (a sibling folder under the root) for
//     as long as a socket is in its socket maps: its programs and maps carry
//     the connections paired under it to their end, since removing a socket
//     from a socket map would drop the data redirected to it and not yet
//     read (nor can a map change size in place). Each of its pods gets
//     its configuration translated into the new layout (by the field names
//     of the BTF both data paths carry) and its cgroup links switched to the
//     new programs and moved under the new state, all or nothing: staged
//     under moving/<pod id>, then renamed into pods/ (podmove.go). Once
//     neither pods nor sockets are left, the older state is removed.
//
// The socket owners (cgroup/sock_create's socket storage) are shared by the
// states of every layout whose struct sock_owner is the same, so that
// sockets created before an upgrade (listening sockets above all) are known
// to the new programs.
//
// Upgrade is idempotent: the installer runs it at start and at every sweep,
// which also catches a pod that a plugin of the older release attached
// while the upgrade ran.

// SharedDir holds, under the root, what states of several layouts share:
// <root>/shared/owner-<format>/sock_owner_map.
const SharedDir = "shared"

const sharedDir = SharedDir

const (
	ownerMapName  = "sock_owner_map"
	paramMapName  = "sock_param_map"
	usageMapName  = "pod_usage"
	configMapName = "mesh_config"
)

// loadOptions load spec against the state's pinned maps, with the shared
// socket owner map and the older release's (olderowners.go). It runs
// under the state's lock; the caller calls done once loaded.
func (n *Node) loadOptions(spec *ebpf.CollectionSpec, owner *ebpf.Map) (opts *ebpf.CollectionOptions, done func(), err error) {
	older, err := n.olderOwners(spec.Maps[olderOwnersName], owner)
	if err != nil {
		return nil, nil, err
	}
	if err := useOlderOwners(spec, older); err != nil {
		older.Close()
		return nil, nil, err
	}
	return &ebpf.CollectionOptions{
		Maps:            ebpf.MapOptions{PinPath: n.mapsDir()},
		MapReplacements: map[string]*ebpf.Map{ownerMapName: owner, olderOwnersName: older},
	}, func() { older.Close() }, nil
}

// loadAgainstState loads spec into objs with loadOptions.
func (n *Node) loadAgainstState(spec *ebpf.CollectionSpec, owner *ebpf.Map, objs any) error {
	opts, done, err := n.loadOptions(spec, owner)
	if err != nil {
		return err
	}
	defer done()
	return spec.LoadAndAssign(objs, opts)
}

// openOwnerMap opens, or creates, the socket owner map of spec's layout
// shared under the root, and links it into the state's maps/ (a bpffs
// symlink), where opening the state finds it.
func (n *Node) openOwnerMap(spec *ebpf.MapSpec) (*ebpf.Map, error) {
	sum := sha256.Sum256([]byte(mapLayout(spec)))
	dir := filepath.Join(filepath.Dir(n.dir), sharedDir, "owner-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create shared state dir: %w", err)
	}
	var (
		m   *ebpf.Map
		err error
	)
	// Two states of different layouts may be created at once: the loser
	// of the pin finds the winner's map.
	for try := 0; try < 2; try++ {
		m, err = ebpf.NewMapWithOptions(spec, ebpf.MapOptions{PinPath: dir})
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("socket owner map (pinned at %s): %w", dir, err)
	}
	pin := filepath.Join(n.mapsDir(), ownerMapName)
	target, _ := filepath.Rel(n.mapsDir(), filepath.Join(dir, spec.Name))
	if cur, err := os.Readlink(pin); err != nil || cur != target {
		_ = os.Remove(pin)
		if err := os.Symlink(target, pin); err != nil {
			m.Close()
			return nil, fmt.Errorf("link the socket owner map into %s: %w", n.mapsDir(), err)
		}
	}
	return m, nil
}

// siblings lists the states of other layouts under the root.
func (n *Node) siblings() []string {
	return stateDirs(filepath.Dir(n.dir), filepath.Base(n.dir))
}

// stateDirs lists the state folders under root (every folder with maps/),
// but the one named except.
func stateDirs(root, except string) []string {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || e.Name() == except || e.Name() == sharedDir {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "maps")); err == nil {
			out = append(out, dir)
		}
	}
	return out
}

// removeState detaches the pods of the state in dir and removes it.
func removeState(dir string) error {
	ents, _ := os.ReadDir(filepath.Join(dir, "pods"))
	var errs []error
	for _, e := range ents {
		errs = append(errs, detachIn(dir, e.Name()))
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("remove node state %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// detachIn detaches a pod from the state in dir, of any layout: it unpins
// the pod's links (its programs leave the cgroup), also those a move into
// that state staged, and deletes its entries from the per-pod maps when
// they are keyed by cgroup id.
func detachIn(dir, id string) error {
	podDir := filepath.Join(dir, "pods", id)
	if err := os.RemoveAll(filepath.Join(dir, stagingDir, id)); err != nil {
		return fmt.Errorf("remove staged pod state: %w", err)
	}
	cgID, err := linkCgroupID(filepath.Join(podDir, linkSockops))
	var errs []error
	if err == nil {
		for _, name := range []string{paramMapName, usageMapName} {
			m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", name), nil)
			if err != nil {
				continue
			}
			if m.KeySize() == 8 {
				if err := m.Delete(cgID); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					errs = append(errs, fmt.Errorf("delete pod %s from %s: %w", id, name, err))
				}
			}
			m.Close()
		}
	}
	if err := os.RemoveAll(podDir); err != nil {
		errs = append(errs, fmt.Errorf("remove pod state %s: %w", podDir, err))
	}
	return errors.Join(errs...)
}

// linkCgroupID reads the cgroup id of the pinned cgroup link at p.
func linkCgroupID(p string) (uint64, error) {
	l, err := link.LoadPinnedLink(p, nil)
	if errors.Is(err, os.ErrNotExist) {
		return 0, ErrPodNotAttached
	}
	if err != nil {
		return 0, fmt.Errorf("load pinned link %s: %w", p, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return 0, fmt.Errorf("link info of %s: %w", p, err)
	}
	cg := info.Cgroup()
	if cg == nil {
		return 0, fmt.Errorf("%s is not a cgroup link", p)
	}
	return cg.CgroupId, nil
}

// inheritGlobal sets cfg's switch and flow-control bound from the newest
// readable state of another layout, when there is one.
func (n *Node) inheritGlobal(spec *ebpf.CollectionSpec, cfg *meshGlobalConfig) {
	dirs := n.siblings()
	sort.Slice(dirs, func(i, j int) bool { return modTime(dirs[i]) > modTime(dirs[j]) })
	for _, dir := range dirs {
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", configMapName), nil)
		if err != nil {
			continue
		}
		raw := make([]byte, spec.Maps[configMapName].ValueSize)
		err = readConverted(m, uint32(0), "global_config", spec.Maps[configMapName].Value, raw)
		m.Close()
		var old meshGlobalConfig
		if err == nil {
			err = decodeRaw(raw, &old)
		}
		if err != nil {
			continue // unreadable: the defaults are safe, and creating the state must not fail for it
		}
		cfg.Disabled = old.Disabled
		if old.BacklogLimit != 0 {
			cfg.BacklogLimit = old.BacklogLimit
		}
		return
	}
}

// decodeRaw decodes a map value read as bytes into v, a generated struct.
func decodeRaw(raw []byte, v any) error {
	if binary.Size(v) != len(raw) {
		return fmt.Errorf("%T is %d bytes, the value %d", v, binary.Size(v), len(raw))
	}
	return binary.Read(bytes.NewReader(raw), binary.LittleEndian, v)
}

func modTime(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.ModTime().UnixNano()
}

// Retiring is the state of another layout that still carries connections
// paired under it.
type Retiring struct {
	Dir     string
	Pods    int // pods not moved yet (the next upgrade pass moves them)
	Sockets int // sockets still in its socket maps
}

// UpgradeReport says what one Upgrade did.
type UpgradeReport struct {
	// Replaced is set when this binary's programs replaced the pinned
	// ones of the same layout.
	Replaced bool
	// Relinked counts pod links switched to this binary's programs;
	// Moved, pods moved from the state of another layout.
	Relinked, Moved int
	// Removed lists the states of other layouts removed: no pod and no
	// socket was left in them.
	Removed []string
	// Retiring lists those that still carry connections.
	Retiring []Retiring
}

// Upgrade brings the node to this binary's data path (see the comment at
// the top of this file). It runs under the state's lock.
func (n *Node) Upgrade() (UpgradeReport, error) {
	var r UpgradeReport
	if n.dataPath != meshDataPath {
		return r, errors.New("the benchmark's data path without capture is never installed by an upgrade")
	}
	unlock, err := lockDir(n.dir)
	if err != nil {
		return r, err
	}
	defer unlock()
	// The BPF object is parsed only when there is something to load or
	// translate, not at every pass of a node already upgraded.
	spec := sync.OnceValues(loadMesh)
	c, err := n.global()
	if err != nil {
		return r, err
	}
	if c.Build != dataPathID(meshDataPath) {
		s, err := spec()
		if err != nil {
			return r, fmt.Errorf("load BPF spec: %w", err)
		}
		if err := n.replacePrograms(s); err != nil {
			return r, err
		}
		r.Replaced = true
	}
	var errs []error
	ids, err := n.podIDs()
	if err != nil {
		return r, err
	}
	for _, id := range ids {
		k, err := n.relink(n.podDir(id))
		r.Relinked += k
		errs = append(errs, err)
	}
	if err := n.rollBackMoves(); err != nil {
		return r, errors.Join(append(errs, err)...)
	}
	for _, dir := range n.siblings() {
		moved, err := n.adoptPods(spec, dir)
		r.Moved += moved
		errs = append(errs, err)
		pods, _ := os.ReadDir(filepath.Join(dir, "pods"))
		sockets, err := countSockets(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(pods) == 0 && sockets == 0 {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove the older state %s: %w", dir, err))
				continue
			}
			r.Removed = append(r.Removed, dir)
			continue
		}
		r.Retiring = append(r.Retiring, Retiring{Dir: dir, Pods: len(pods), Sockets: sockets})
	}
	return r, errors.Join(errs...)
}

// replacePrograms loads this binary's programs against the pinned maps and
// puts them in place of the pinned ones: sk_msg on the socket map, then the
// pins (each replaced by a rename), then the recorded build.
func (n *Node) replacePrograms(spec *ebpf.CollectionSpec) error {
	var progs meshPrograms
	if err := n.loadAgainstState(spec, n.maps.SockOwnerMap, &progs); err != nil {
		return fmt.Errorf("load BPF programs against the pinned maps: %w", verifierError(err))
	}
	defer progs.MeshSkMsg.Close()
	defer progs.MeshUsage.Close()
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  n.maps.SockOpsMap.FD(),
		Program: progs.MeshSkMsg,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		progs.Close()
		return fmt.Errorf("attach sk_msg to sock_ops_map: %w", err)
	}
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{pinSockops, progs.MeshSockops}, {pinSockCreate, progs.MeshSockCreate}, {pinUsage, progs.MeshUsage}, {pinSkMsg, progs.MeshSkMsg}} {
		tmp := n.progPin(p.name) + "-new" // bpffs refuses dots in names
		_ = os.Remove(tmp)
		if err := p.prog.Pin(tmp); err != nil {
			progs.Close()
			return fmt.Errorf("pin %s program: %w", p.name, err)
		}
		if err := os.Rename(tmp, n.progPin(p.name)); err != nil {
			progs.Close()
			return fmt.Errorf("replace the pinned %s program: %w", p.name, err)
		}
	}
	n.sockops.Close()
	n.sockCreate.Close()
	n.sockops, n.sockCreate = progs.MeshSockops, progs.MeshSockCreate
	return n.updateGlobal(func(c *meshGlobalConfig) { c.Build = dataPathID(meshDataPath) })
}

// relink switches the links pinned in a pod's folder here to this state's
// programs, in place. It returns how many links it switched.
func (n *Node) relink(podDir string) (int, error) {
	switched := 0
	for _, a := range []struct {
		name string
		prog *ebpf.Program
	}{{linkSockCreate, n.sockCreate}, {linkSockops, n.sockops}} {
		p := filepath.Join(podDir, a.name)
		l, err := link.LoadPinnedLink(p, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return switched, fmt.Errorf("load pinned link %s: %w", p, err)
		}
		changed, err := switchLink(l, a.prog)
		l.Close()
		if err != nil {
			return switched, fmt.Errorf("link %s: %w", p, err)
		}
		if changed {
			switched++
		}
	}
	return switched, nil
}

// switchLink points l at prog unless it runs prog already, and says
// whether it did.
func switchLink(l link.Link, prog *ebpf.Program) (bool, error) {
	li, err := l.Info()
	if err != nil {
		return false, err
	}
	pi, err := prog.Info()
	if err != nil {
		return false, err
	}
	if id, ok := pi.ID(); ok && id == li.Program {
		return false, nil
	}
	return true, l.Update(prog)
}

// adoptPods moves the pods of the state in dir (another layout) here, each
// all or nothing (movePod): the pod's configuration is translated into this
// layout, then its links are switched to this state's programs and moved.
// A pod attached here as well (its sandbox was added again) only leaves
// dir.
func (n *Node) adoptPods(loadSpec func() (*ebpf.CollectionSpec, error), dir string) (int, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "pods"))
	if err != nil || len(ents) == 0 {
		return 0, nil
	}
	spec, err := loadSpec()
	if err != nil {
		return 0, fmt.Errorf("load BPF spec: %w", err)
	}
	params, err := ebpf.LoadPinnedMap(filepath.Join(dir, "maps", paramMapName), nil)
	if err != nil {
		return 0, fmt.Errorf("pod configuration of the older state %s: %w", dir, err)
	}
	defer params.Close()
	cgroups := n.podCgroups(dir, ents)
	moved := 0
	var errs []error
	for _, e := range ents {
		id := e.Name()
		ok, err := n.movePod(dir, id, func(cgID uint64) (*meshPodConfig, error) {
			return convertPodConfig(params, cgID, spec)
		}, func(cgID uint64) string { return cgroups[cgID] })
		if err != nil {
			errs = append(errs, fmt.Errorf("move pod %s from %s: %w", id, dir, err))
		}
		if ok {
			moved++
		}
	}
	return moved, errors.Join(errs...)
}

// podCgroups finds the cgroup directories of the pods of the state in dir
// (one walk of the cgroup hierarchy for them all). A pod whose cgroup is
// not found gets no retiring link (keepOlderSockops); a failed walk is
// not an error for the move.
func (n *Node) podCgroups(dir string, pods []os.DirEntry) map[uint64]string {
	ids := map[uint64]bool{}
	for _, e := range pods {
		if id, err := linkCgroupID(filepath.Join(dir, "pods", e.Name(), linkSockops)); err == nil {
			ids[id] = true
		}
	}
	root := n.cgroupRoot
	if root == "" {
		root, _ = cgroupv2.Mount()
	}
	if len(ids) == 0 || root == "" {
		return nil
	}
	found, _ := cgroupv2.Find(root, ids)
	return found
}

// convertPodConfig reads the configuration of the pod on cgroup cgID from
// params, a state of another layout, into this layout.
func convertPodConfig(params *ebpf.Map, cgID uint64, spec *ebpf.CollectionSpec) (*meshPodConfig, error) {
	raw := make([]byte, spec.Maps[paramMapName].ValueSize)
	if err := readConverted(params, cgID, "pod_config", spec.Maps[paramMapName].Value, raw); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	var pc meshPodConfig
	if err := decodeRaw(raw, &pc); err != nil {
		return nil, err
	}
	// Through PodConfig, so that fields the older layout lacked get their
	// defaults.
	return encodePodConfig(decodePodConfig(&pc))
}
