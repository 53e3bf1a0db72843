// Package bpf is the mesh-accel engine: it loads the BPF data path (sockops,
// sk_msg and cgroup/sock_create programs, built from c/ by bpf2go), keeps
// the node-wide state pinned under bpffs, attaches a pod's programs and
// rules to the pod's cgroup v2 directory, and reads the counters.
//
// Node state lives at <bpffs>/<root>/<LayoutVersion>/: maps/ (pinned by
// name; sock_owner_map is a link into <root>/shared/, see upgrade.go),
// progs/ and pods/<pod id>/ (the pod's cgroup links). Several processes may
// open the node at once (CNI ADDs run concurrently): creation and upgrades
// are serialised by a file lock on that directory.
package bpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// LayoutVersion names the layout of the pinned maps and programs. It changes
// whenever a map's key or value changes, so that an upgrade can create the
// new state beside the old one.
const LayoutVersion = "v5"

// DefaultMapSize is the number of entries of the connection maps, the
// installer's and mesh-accelctl's --map-size by default. The C declares
// the same figure (max_entries in c/mesh_accel.c): TestDefaultMapSize
// checks that it is the spec's.
const DefaultMapSize = nodestate.DefaultMapSize

// The bounds of a map size a node is configured with (CheckMapSize). Below
// MinMapSize the guaranteed share of 256 pods (C/512, quota.go) falls
// under one connection; at MaxMapSize the four connection maps take 64 MiB
// of kernel memory empty and 664 MiB full (docs/design.md, "Map
// capacity"), which no node of 250 pods needs.
const (
	MinMapSize = 1 << 10
	MaxMapSize = 1 << 20
)

// CheckMapSize checks a configured map size: a power of two (the kernel
// rounds a hash map's buckets up to one, and the guaranteed share C/512
// stays a whole number) from MinMapSize to MaxMapSize. The caller names
// the setting in its message.
func CheckMapSize(size uint32) error {
	if size < MinMapSize || size > MaxMapSize || size&(size-1) != 0 {
		return fmt.Errorf("%d entries: want a power of two from %d to %d (default %d)", size, MinMapSize, MaxMapSize, DefaultMapSize)
	}
	return nil
}

// DefaultBacklogLimit is the flow-control bound: the most unread redirected
// bytes one receiving socket may hold before its direction takes the stack
// (DEFAULT_BACKLOG_LIMIT in c/mesh_accel.h).
const DefaultBacklogLimit = uint32(meshLimitDEFAULT_BACKLOG_LIMIT)

// Program pin names under progs/. The sk_msg program is pinned last and so
// marks complete node state.
const (
	pinSockops    = "sockops"
	pinSockCreate = "sock_create"
	pinSkMsg      = "sk_msg"
)

// Options say where the node state lives and how big its maps are.
type Options struct {
	// BPFFS is the bpffs mount point, nodestate.DefaultBPFFS when empty; it is
	// mounted when nothing is mounted there.
	BPFFS string
	// Root is the state's folder under BPFFS, nodestate.DefaultBPFRoot when
	// empty.
	// Tests use a unique root per run.
	Root string
	// MapSize is the capacity of the socket, pair and pending-connection
	// maps, DefaultMapSize when zero. It is part of the state's layout
	// (Options.Layout): another size names another state, which an
	// Upgrade fills with the pods of the one before, as for a new
	// LayoutVersion. Any size above zero loads (tests use small maps);
	// the programs check configured sizes with CheckMapSize.
	MapSize uint32
	// BacklogLimit is the flow-control bound in bytes, DefaultBacklogLimit
	// when zero. It applies when the state is created; SetBacklogLimit
	// changes it on live state.
	BacklogLimit uint32
	// GuaranteedShare is the connection-map entries every pod can always
	// hold (up to its quota), kept for GuaranteedPods pods; the rest of
	// the maps is a pool the pods share (see quota.go). Zero: MapSize/512
	// and DefaultGuaranteedPods. They apply when the state is created.
	GuaranteedShare, GuaranteedPods uint32
	// RegistrationTTL is how long a connecting socket's registration may
	// wait for its local peer before this handle's Sweep releases it,
	// DefaultRegistrationTTL when zero.
	RegistrationTTL time.Duration
	// CgroupRoot is the cgroup v2 hierarchy as this process sees it (the
	// installer sees the host's under its host mount), where an upgrade
	// finds the cgroups of the pods it moves; the mount of cgroup v2 in
	// this process's mount namespace when empty.
	CgroupRoot string

	// layout replaces LayoutVersion in the state's path: tests make state
	// of an "older layout" with it.
	layout string
	// dataPath replaces the data path this binary ships (meshDataPath)
	// when set: the benchmark's build without capture (meshbench.go).
	dataPath *dataPathObject
}

// dataPathObject is a build of the data path: its loader and its object.
type dataPathObject struct {
	load func() (*ebpf.CollectionSpec, error)
	obj  []byte
}

// meshDataPath is the data path this binary ships: the only one unless it
// was built with -tags meshbench.
var meshDataPath = &dataPathObject{load: loadMesh, obj: _MeshBytes}

func (o Options) dataPathObject() *dataPathObject {
	if o.dataPath == nil {
		return meshDataPath
	}
	return o.dataPath
}

// Dir is the folder of the node state these options name:
// <BPFFS>/<Root>/<Layout>.
func (o Options) Dir() string { return o.dir() }

// Layout names the state's layout: LayoutVersion, followed by the maps'
// size when it is not DefaultMapSize ("v5-262144"). Two states of
// different names live side by side, and an upgrade moves the pods from
// one to the other (upgrade.go).
func (o Options) Layout() string {
	v := o.layout
	if v == "" {
		v = LayoutVersion
	}
	return LayoutName(v, o.mapSize())
}

// LayoutName is the name of the state of layout version v whose maps hold
// size entries.
func LayoutName(v string, size uint32) string {
	if size == 0 || size == DefaultMapSize {
		return v
	}
	return fmt.Sprintf("%s-%d", v, size)
}

func (o Options) mapSize() uint32 {
	if o.MapSize == 0 {
		return DefaultMapSize
	}
	return o.MapSize
}

// StateExists reports whether complete node state exists (its sk_msg
// program, pinned last, is there), without opening or creating it.
func StateExists(o Options) bool {
	_, err := os.Stat(filepath.Join(o.dir(), "progs", pinSkMsg))
	return err == nil
}

// PodAttached reports whether the pod has state, in this layout's state or
// another's, without opening the node.
func PodAttached(o Options, id string) bool {
	if !ValidPodID(id) {
		return false
	}
	for _, dir := range stateDirs(filepath.Dir(o.dir()), "") {
		if _, err := os.Stat(filepath.Join(dir, "pods", id)); err == nil {
			return true
		}
	}
	return false
}

func (o Options) dir() string {
	fs, root := o.BPFFS, o.Root
	if fs == "" {
		fs = nodestate.DefaultBPFFS
	}
	if root == "" {
		root = nodestate.DefaultBPFRoot
	}
	return filepath.Join(fs, root, o.Layout())
}

// Node is an open handle on the node-wide state. Close releases the handle;
// the pinned state stays until Remove.
type Node struct {
	dir        string
	dataPath   *dataPathObject // Options.dataPath, or meshDataPath
	cgroupRoot string          // Options.CgroupRoot
	maps       meshMaps
	sockops    *ebpf.Program
	sockCreate *ebpf.Program
	// untrustedSeen are the untrusted registrations the last sweep cycle
	// found; cycle is the cycle under way (sweepcycle.go), nil between
	// cycles. sweepMu serialises the sweep's passes.
	untrustedSeen map[meshHelperVal]bool
	cycle         *sweepCycle
	sweepMu       sync.Mutex
	sweepBatch    int           // SweepBatch; tests make it smaller
	ttl           time.Duration // Options.RegistrationTTL
	// usage is mesh_usage (quota.go), loaded at first use.
	usage     *ebpf.Program
	usageErr  error
	usageOnce sync.Once
	// sockets is mesh_sockets (mapfill.go), loaded at first use.
	sockets     *ebpf.Program
	socketsErr  error
	socketsOnce sync.Once
	totals      sweepTotals
	// scanHook, when set (tests), runs in Sweep right after its scans of
	// the maps, before it reads the usage counts again to correct them.
	scanHook func()
}

// OpenNode creates the node state, or reuses it when another process
// created it already.
func OpenNode(o Options) (*Node, error) {
	if err := CheckRelease(); err != nil {
		return nil, err
	}
	fs := o.BPFFS
	if fs == "" {
		fs = nodestate.DefaultBPFFS
	}
	if err := ensureBPFFS(fs); err != nil {
		return nil, err
	}
	dir := o.dir()
	n := &Node{dir: dir, dataPath: o.dataPathObject(), cgroupRoot: o.CgroupRoot, ttl: o.RegistrationTTL,
		sweepBatch: SweepBatch}
	if n.ttl <= 0 {
		n.ttl = DefaultRegistrationTTL
	}
	// Complete state (the sk_msg pin is made last) opens without the lock
	// and without parsing the BPF objects: the path of every CNI ADD.
	if _, err := os.Stat(n.progPin(pinSkMsg)); err == nil && n.dataPath == meshDataPath {
		if err := n.loadPinned(); err != nil {
			n.Close()
			return nil, err
		}
		return n, nil
	}
	if err := os.MkdirAll(n.mapsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create node state dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()

	spec, err := n.dataPath.load()
	if err != nil {
		return nil, fmt.Errorf("load BPF spec: %w", err)
	}
	var maps meshMapSpecs
	if err := spec.Assign(&maps); err != nil {
		return nil, fmt.Errorf("BPF map specs: %w", err)
	}
	for _, m := range connectionMaps(&maps) {
		m.MaxEntries = o.mapSize()
	}
	owner, err := n.openOwnerMap(maps.SockOwnerMap)
	if err != nil {
		return nil, err
	}
	defer owner.Close() // n.maps holds its own handle
	if err := n.loadAgainstState(spec, owner, &n.maps); err != nil {
		return nil, fmt.Errorf("load node maps (pinned at %s): %w", n.mapsDir(), err)
	}
	if _, err := os.Stat(n.progPin(pinSkMsg)); err == nil {
		// Another process completed the state while we waited for the lock.
		if err := n.loadPinnedProgs(); err != nil {
			n.Close()
			return nil, err
		}
		return n, nil
	}
	if err := n.create(spec, o); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// loadPinned opens complete node state from its pins: every map of
// meshMaps by its ebpf tag but refused_dests, then the programs.
func (n *Node) loadPinned() error {
	v := reflect.ValueOf(&n.maps).Elem()
	for i := 0; i < v.NumField(); i++ {
		name := v.Type().Field(i).Tag.Get("ebpf")
		// refused_dests, the data path's cache of destinations that
		// refused a pair, is not pinned: it belongs to the programs
		// loaded with it, and no Go code reads it.
		if name == "" || name == meshMapRefusedDests {
			continue
		}
		p := filepath.Join(n.mapsDir(), name)
		m, err := ebpf.LoadPinnedMap(p, nil)
		if name == olderOwnersName && errors.Is(err, os.ErrNotExist) {
			continue // state of an earlier build: the next upgrade pins it
		}
		if err != nil {
			return fmt.Errorf("load pinned map %s: %w", p, err)
		}
		v.Field(i).Set(reflect.ValueOf(m))
	}
	return n.loadPinnedProgs()
}

func (n *Node) mapsDir() string            { return filepath.Join(n.dir, "maps") }
func (n *Node) progPin(name string) string { return filepath.Join(n.dir, "progs", name) }
func (n *Node) podDir(id string) string    { return filepath.Join(n.dir, "pods", id) }
func (n *Node) podsDir() string            { return filepath.Join(n.dir, "pods") }

// Dir is the node state's folder under bpffs.
func (n *Node) Dir() string { return n.dir }

func (n *Node) loadPinnedProgs() error {
	var err error
	if n.sockops, err = ebpf.LoadPinnedProgram(n.progPin(pinSockops), nil); err != nil {
		return fmt.Errorf("load pinned sockops program: %w", err)
	}
	if n.sockCreate, err = ebpf.LoadPinnedProgram(n.progPin(pinSockCreate), nil); err != nil {
		return fmt.Errorf("load pinned sock_create program: %w", err)
	}
	return nil
}

// create loads the programs, attaches sk_msg to the socket map and pins the
// programs, sk_msg last. It runs under the node lock.
func (n *Node) create(spec *ebpf.CollectionSpec, o Options) error {
	var progs meshPrograms
	if err := n.loadAgainstState(spec, n.maps.SockOwnerMap, &progs); err != nil {
		return fmt.Errorf("load BPF programs: %w", verifierError(err))
	}
	defer progs.MeshSkMsg.Close()
	defer progs.MeshUsage.Close()
	defer progs.MeshSockets.Close()
	n.sockops, n.sockCreate = progs.MeshSockops, progs.MeshSockCreate
	if err := n.initShare(o); err != nil {
		return err
	}
	if err := n.initFill(); err != nil {
		return err
	}

	// The switch and the flow-control bound of the state this one
	// replaces (an upgrade that changed the layout) carry over.
	cfg := meshGlobalConfig{BacklogLimit: o.BacklogLimit}
	n.inheritGlobal(spec, &cfg)
	cfg.Build = dataPathID(n.dataPath)
	if err := n.maps.MeshConfig.Update(uint32(0), cfg, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("initialise global configuration: %w", err)
	}
	if err := link.RawAttachProgram(link.RawAttachProgramOptions{
		Target:  n.maps.SockOpsMap.FD(),
		Program: progs.MeshSkMsg,
		Attach:  ebpf.AttachSkMsgVerdict,
	}); err != nil {
		return fmt.Errorf("attach sk_msg to sock_ops_map: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(n.progPin(pinSkMsg)), 0o700); err != nil {
		return fmt.Errorf("create programs dir: %w", err)
	}
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{pinSockops, n.sockops}, {pinSockCreate, n.sockCreate}, {pinUsage, progs.MeshUsage}, {pinSockets, progs.MeshSockets}, {pinSkMsg, progs.MeshSkMsg}} {
		_ = os.Remove(n.progPin(p.name)) // leftover of an interrupted creation
		if err := p.prog.Pin(n.progPin(p.name)); err != nil {
			return fmt.Errorf("pin %s program: %w", p.name, err)
		}
	}
	return nil
}

// connectionMaps are the maps sized by Options.MapSize: the socket, pair
// and pending-connection maps.
func connectionMaps(m *meshMapSpecs) []*ebpf.MapSpec {
	return []*ebpf.MapSpec{m.SockOpsMap, m.SockRxMap, m.SockProxyMap, m.SockHelperMap}
}

// verifierError keeps the end of a verifier log, where the reason is.
func verifierError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}

// Close releases this process's handles. The pinned state stays.
func (n *Node) Close() error {
	for _, p := range []*ebpf.Program{n.sockops, n.sockCreate, n.usage, n.sockets} {
		if p != nil {
			p.Close()
		}
	}
	return n.maps.Close()
}

// Remove detaches every pod and deletes the node state: no pin, program or
// map of it stays behind. The handle is closed.
func (n *Node) Remove() error {
	ids, err := n.podIDs()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, n.DetachPod(id))
	}
	for _, dir := range n.siblings() {
		errs = append(errs, removeState(dir))
	}
	errs = append(errs, n.Close())
	if err := os.RemoveAll(n.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove node state: %w", err))
	}
	// The socket owners go with the last state; the root and bpffs stay,
	// and the root goes when it is empty.
	root := filepath.Dir(n.dir)
	if err := os.RemoveAll(filepath.Join(root, sharedDir)); err != nil {
		errs = append(errs, fmt.Errorf("remove shared node state: %w", err))
	}
	_ = os.Remove(root)
	return errors.Join(errs...)
}

// SetEnabled sets the global switch. Off, no new connection is paired;
// pairs already recorded stay accelerated until they close.
func (n *Node) SetEnabled(on bool) error {
	return n.updateGlobal(func(c *meshGlobalConfig) {
		c.Disabled = 0
		if !on {
			c.Disabled = 1
		}
	})
}

// Enabled reads the global switch.
func (n *Node) Enabled() (bool, error) {
	c, err := n.global()
	return c.Disabled == 0, err
}

// SetBacklogLimit sets the flow-control bound (bytes; 0 restores
// DefaultBacklogLimit). It applies to the next message of every direction.
func (n *Node) SetBacklogLimit(limit uint32) error {
	return n.updateGlobal(func(c *meshGlobalConfig) { c.BacklogLimit = limit })
}

// BacklogLimit reads the flow-control bound in bytes.
func (n *Node) BacklogLimit() (uint32, error) {
	c, err := n.global()
	if c.BacklogLimit == 0 {
		c.BacklogLimit = DefaultBacklogLimit
	}
	return c.BacklogLimit, err
}

func (n *Node) global() (meshGlobalConfig, error) {
	var c meshGlobalConfig
	if err := n.maps.MeshConfig.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("read global configuration: %w", err)
	}
	return c, nil
}

// updateGlobal changes the global configuration. Each field is one aligned
// word that the data path reads on its own, so a concurrent reader sees the
// old or the new value of every field.
func (n *Node) updateGlobal(change func(*meshGlobalConfig)) error {
	c, err := n.global()
	if err != nil {
		return err
	}
	change(&c)
	if err := n.maps.MeshConfig.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write global configuration: %w", err)
	}
	return nil
}

// ensureBPFFS mounts bpffs at path unless it is mounted there already.
func ensureBPFFS(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return fmt.Errorf("create bpffs mount point: %w", err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mount bpffs at %s: %w", path, err)
	}
	return nil
}

// lockDir takes an exclusive flock on dir until the returned func is called.
func lockDir(dir string) (func(), error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s for locking: %w", dir, err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() { unix.Close(fd) }, nil
}
