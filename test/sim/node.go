package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// NodeOptions configures a node.
type NodeOptions struct {
	// Prefix starts the node's name, which names its bridge, veths, netns
	// files and cgroup: 1 to 5 characters of [a-z0-9] ("ma"). The name is
	// the prefix and 6 random hex digits, so that it fits the 15 characters
	// of an interface name with a pod number appended.
	Prefix string
	// Services is the mesh's service registry, which every Envoy sidecar
	// of the node is configured with ([DefaultServices] if nil).
	Services []Service
}

// requiredTools must be in PATH.
var requiredTools = []string{"nsenter", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save"}

var prefixRE = regexp.MustCompile(`^[a-z0-9]{1,5}$`)

// Node is a simulated Kubernetes node: a bridge, pods on it, and the cgroup
// and temporary directory they share. Its methods are safe for concurrent use.
type Node struct {
	Name      string       // prefix + 6 random hex digits; also the bridge's name
	CgroupDir string       // absolute: <cgroup v2 mount>/mesh-accel-sim-<Name>
	Bridge    string       // the bridge interface
	IPv4Net   netip.Prefix // 10.R1.R2.0/24; the bridge has .1, pods .2 and up
	IPv6Net   netip.Prefix // fdXX:XXXX:XXXX:XXXX::/64; the bridge has ::1
	TempDir   string       // holds the executable copy and a 1777 scratch dir

	nsenter string
	exe     string // copy of the running executable, runnable by any uid
	scratch string // TMPDIR and HOME of pod processes

	ctx    context.Context // lives until Close; bounds app and sidecar processes
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	man     manifest
	st      *stateFiles
	jan     *janitor
	pods    map[string]*Pod
	order   []*Pod
	procs   map[*Proc]struct{}
	nextIdx int

	services []Service // the mesh's registry (NodeOptions.Services)
	ca       meshCA    // signs the sidecars' workload certificates
	xdsMu    sync.Mutex
	meshed   []*Pod // pods with an Envoy sidecar, in the registry (guarded by xdsMu)

	closeOnce sync.Once
	closeErr  error
}

// NewNode creates a node. It needs root, cgroup v2 and the tools nsenter,
// iptables-restore, ip6tables-restore, iptables-save and ip6tables-save.
// Leftovers of dead processes' nodes are swept first ([Sweep]).
func NewNode(opts NodeOptions) (*Node, error) {
	if opts.Prefix == "" {
		opts.Prefix = "ma"
	}
	if !prefixRE.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("new node: prefix %q is not 1-5 characters of [a-z0-9]", opts.Prefix)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("new node: needs root")
	}
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			return nil, fmt.Errorf("new node: %w", err)
		}
	}
	cg, err := cgroupv2.Mount()
	if err != nil {
		return nil, fmt.Errorf("new node: %w", err)
	}
	_ = Sweep() // best effort: a leftover that resists must not block new nodes
	n, err := reserveNode(opts.Prefix, cg)
	if err != nil {
		return nil, err
	}
	n.services = opts.Services
	if n.services == nil {
		n.services = DefaultServices
	}
	if err := (envoyInput{Services: n.services}).validate(); err != nil {
		return nil, errors.Join(fmt.Errorf("new node: %w", err), n.Close())
	}
	if err := n.setup(); err != nil {
		return nil, errors.Join(fmt.Errorf("new node %s: %w", n.Name, err), n.Close())
	}
	return n, nil
}

// reserveNode picks an unused name and creates the node's locked state.
func reserveNode(prefix, cgroupMount string) (*Node, error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("new node: %w", err)
	}
	for range 10 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("new node: %w", err)
		}
		name := prefix + hex.EncodeToString(b[:])
		if _, err := netlink.LinkByName(name); err == nil {
			continue
		}
		st, err := createState(name)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("new node: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		n := &Node{
			Name: name, Bridge: name, CgroupDir: filepath.Join(cgroupMount, cgroupPrefix+name),
			TempDir: filepath.Join(os.TempDir(), tempPrefix+name), nsenter: nsenter,
			ctx: ctx, cancel: cancel, st: st,
			pods: map[string]*Pod{}, procs: map[*Proc]struct{}{}, nextIdx: 2,
		}
		n.man = manifest{Name: name, Bridge: n.Bridge, CgroupDir: n.CgroupDir, TempDir: n.TempDir}
		return n, nil
	}
	return nil, errors.New("new node: no free name")
}

// setup creates the node's resources, each listed in the manifest first.
func (n *Node) setup() error {
	if _, err := os.Stat(netnsDir); errors.Is(err, os.ErrNotExist) {
		n.man.NetnsDirCreated = true
	}
	if err := n.st.save(n.man); err != nil {
		return err
	}
	if err := n.makeTempDir(); err != nil {
		return err
	}
	jan, err := startJanitor(n.exe, n.st)
	if err != nil {
		return err
	}
	n.jan = jan
	if err := os.Mkdir(n.CgroupDir, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	if n.IPv4Net, n.IPv6Net, err = pickSubnets(); err != nil {
		return err
	}
	return createBridge(n.Bridge, n.IPv4Net, n.IPv6Net)
}

// makeTempDir creates TempDir (0755) with a copy of the running executable,
// so that the pods' unprivileged users can run it, and a 1777 scratch dir.
func (n *Node) makeTempDir() error {
	if err := os.Mkdir(n.TempDir, 0o755); err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	if err := os.Chmod(n.TempDir, 0o755); err != nil { // umask
		return fmt.Errorf("create temp dir: %w", err)
	}
	if err := checkReachable(n.TempDir); err != nil {
		return err
	}
	n.scratch = filepath.Join(n.TempDir, "scratch")
	if err := os.Mkdir(n.scratch, 0o755); err != nil {
		return fmt.Errorf("create scratch dir: %w", err)
	}
	if err := os.Chmod(n.scratch, 0o1777); err != nil {
		return fmt.Errorf("create scratch dir: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find executable: %w", err)
	}
	n.exe = filepath.Join(n.TempDir, "meshsim")
	return copyFile(self, n.exe, 0o755)
}

// checkReachable fails unless any user can reach and execute files in dir.
func checkReachable(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if st.Flags&unix.ST_NOEXEC != 0 {
		return fmt.Errorf("temp dir %s is on a noexec file system; set TMPDIR", dir)
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("%s (mode %v) is not searchable by the pods' users; set TMPDIR", d, fi.Mode().Perm())
		}
		if d == "/" {
			return nil
		}
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy executable: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("copy executable: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy executable: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy executable: %w", err)
	}
	return os.Chmod(dst, mode)
}

// Services returns the node's service registry.
func (n *Node) Services() []Service { return append([]Service(nil), n.services...) }

// Pod returns the pod of that name, or nil.
func (n *Node) Pod(name string) *Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[name]
}

// Pods returns the node's pods in creation order.
func (n *Node) Pods() []*Pod {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Pod(nil), n.order...)
}

// Close kills every process of the node and removes its pods' namespaces,
// veths, the bridge, the cgroups and the temporary directory. It is
// idempotent; later calls return the first call's result.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.close() })
	return n.closeErr
}

func (n *Node) close() error {
	n.mu.Lock()
	n.closed = true
	procs := make([]*Proc, 0, len(n.procs))
	for p := range n.procs {
		procs = append(procs, p)
	}
	pods, man := n.order, n.man
	n.mu.Unlock()
	n.cancel()
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.Kill())
	}
	for _, p := range pods {
		errs = append(errs, p.closeCgroupFD())
	}
	cerr := cleanup(man)
	errs = append(errs, cerr, waitProcs(procs, 5*time.Second))
	if cerr == nil {
		errs = append(errs, n.st.remove()) // the janitor then finds nothing to do
	}
	if n.jan != nil {
		errs = append(errs, n.jan.stop()) // after a failed cleanup it retries
	}
	if cerr != nil {
		errs = append(errs, n.st.lock.Close()) // what still resists is left to Sweep
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close node %s: %w", n.Name, err)
	}
	return nil
}

func waitProcs(procs []*Proc, timeout time.Duration) error {
	deadline := time.After(timeout)
	for _, p := range procs {
		select {
		case <-p.Done():
		case <-deadline:
			return fmt.Errorf("process %s (pid %d) did not exit", p.Name, p.Pid())
		}
	}
	return nil
}

// track registers a started process until it exits.
func (n *Node) track(p *Proc) {
	n.mu.Lock()
	n.procs[p] = struct{}{}
	n.mu.Unlock()
	go func() {
		<-p.Done()
		n.mu.Lock()
		delete(n.procs, p)
		n.mu.Unlock()
	}()
}

// baseEnv is the environment of every pod process.
func (n *Node) baseEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	// A race-enabled binary sleeps 1 s at exit by default; clients are short.
	gorace := os.Getenv("GORACE")
	if !strings.Contains(gorace, "atexit_sleep_ms") {
		gorace = strings.TrimSpace(gorace + " atexit_sleep_ms=0")
	}
	return []string{"PATH=" + path, "HOME=" + n.scratch, "TMPDIR=" + n.scratch, "GORACE=" + gorace, "GOMAXPROCS=1"}
}
