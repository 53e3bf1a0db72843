package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// PodOptions configures a pod ([Node.AddPod]).
type PodOptions struct {
	Name string // unique within the node: 1-32 characters of [a-z0-9-]
	// Sidecar starts the sidecar proxy, Envoy configured as istiod
	// configures it (envoyconfig.go), as uid/gid 1337 and installs Istio's
	// nat rules (iptables and ip6tables) in the pod.
	Sidecar bool
	// GoSidecar replaces Envoy by the simulator's Go relay (role_sidecar.go),
	// for the faults Envoy cannot produce (a sidecar that splices). Tests
	// that use it say why.
	GoSidecar bool
	// SidecarSplice makes the Go sidecar relay with io.Copy between the two
	// *net.TCPConn, which Go does with splice(2), instead of read/write
	// (implies GoSidecar).
	SidecarSplice bool
	NoApp         bool   // do not start the app server
	AppPort       uint16 // app server port (8080)
	// AppUID and AppGID are the credentials of the app server and of
	// RunClient's clients; 0/0 means 1000/1000 (apps never run as root).
	AppUID, AppGID uint32
	// BeforeStart, if set, runs once the pod's namespace, network and cgroup
	// exist and before any of its processes starts (e.g. to attach BPF
	// programs to CgroupDir, so that they see the servers' sockets being
	// created). An error fails AddPod.
	BeforeStart func(*Pod) error
	// Network, if set, creates the pod's network instead of the node's veth
	// on its bridge, e.g. through a CNI chain driven by the test. It runs
	// once the pod's namespace and cgroup exist, before BeforeStart and
	// before any process starts, and returns the pod's addresses (an invalid
	// ipv6 for an IPv4-only pod). The pod then gets what the sidecar needs
	// (lo up, ::6 on lo) and its port range; its connectivity is not probed,
	// and pods with a Network are never probed by others. An error fails
	// AddPod. What Network creates outside the pod's namespace (a bridge,
	// IPAM state) is the caller's to remove; the namespace, and with it the
	// pod's end of any veth, goes away with the pod as usual.
	Network func(p *Pod) (ipv4, ipv6 netip.Addr, err error)
}

var podNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// maxPods is the number of pod addresses in a /24 besides the bridge's.
const maxPods = 253

// Pod is a network namespace on the node's bridge with its own cgroup.
type Pod struct {
	Name      string
	Netns     string // path of the network namespace, /run/netns/<node>-<pod>
	CgroupDir string // <node cgroup>/<pod name>
	CgroupID  uint64 // cgroupv2.ID(CgroupDir)
	IPv4      netip.Addr
	IPv6      netip.Addr
	Veth      string     // host side of the pod's veth pair (eth0 inside); empty with Network
	Options   PodOptions // with defaults applied

	node     *Node
	cgroupFD *os.File
	app      *Proc
	sidecar  *Proc
	envoy    bool       // the sidecar is Envoy
	xds      *xdsState  // what the node's "istiod" knows of the Envoy (guarded by node.xdsMu)
	created  bool       // fully set up (guarded by the node's mu)
	mu       sync.Mutex // guards cgroupFD, serializes rule changes
}

// AddPod creates a pod: namespace, cgroup, veth on the bridge with the next
// free addresses; then a TCP handshake with an existing pod (IPv4 and IPv6)
// checks that the host lets bridged traffic through (a failure explains the
// host's br_netfilter and FORWARD settings); then BeforeStart runs; then the
// sidecar and the app server start (each waited for until it listens) and
// Istio's rules are installed. On error the pod's resources are removed.
func (n *Node) AddPod(opts PodOptions) (*Pod, error) {
	if !podNameRE.MatchString(opts.Name) {
		return nil, fmt.Errorf("add pod: name %q is not 1-32 characters of [a-z0-9-]", opts.Name)
	}
	if opts.AppPort == 0 {
		opts.AppPort = 8080
	}
	if opts.AppUID == 0 && opts.AppGID == 0 {
		opts.AppUID, opts.AppGID = 1000, 1000
	}
	opts.GoSidecar = opts.GoSidecar || opts.SidecarSplice
	opts.Sidecar = opts.Sidecar || opts.GoSidecar
	p, peer, err := n.reservePod(opts)
	if err != nil {
		return nil, err
	}
	if err := p.create(peer); err != nil {
		derr := p.destroy()
		n.dropPod(p)
		return nil, errors.Join(fmt.Errorf("add pod %s: %w", opts.Name, err), derr, n.leaveMesh(p))
	}
	n.mu.Lock()
	p.created = true
	n.mu.Unlock()
	return p, nil
}

// reservePod records the new pod in the node and its manifest, and returns
// an existing pod to probe connectivity with (or nil).
func (n *Node) reservePod(opts PodOptions) (*Pod, *Pod, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		return nil, nil, errors.New("add pod: node is closed")
	case n.pods[opts.Name] != nil:
		return nil, nil, fmt.Errorf("add pod: %q exists", opts.Name)
	case n.nextIdx > maxPods+1:
		return nil, nil, fmt.Errorf("add pod: node %s is full", n.Name)
	}
	idx := n.nextIdx
	p := &Pod{
		Name: opts.Name, Netns: netnsPath(n.Name, opts.Name), CgroupDir: filepath.Join(n.CgroupDir, opts.Name),
		IPv4: hostAddr(n.IPv4Net, idx), IPv6: hostAddr(n.IPv6Net, idx),
		Veth: fmt.Sprintf("%sv%d", n.Name, idx), Options: opts, node: n,
	}
	var peer *Pod
	for _, q := range n.order {
		if q.created && q.Options.Network == nil {
			peer = q
			break
		}
	}
	n.man.Netns = append(n.man.Netns, p.Netns)
	if opts.Network != nil {
		p.Veth, p.IPv4, p.IPv6, peer = "", netip.Addr{}, netip.Addr{}, nil
	} else {
		n.man.Veths = append(n.man.Veths, p.Veth)
	}
	if err := n.st.save(n.man); err != nil {
		return nil, nil, err
	}
	n.nextIdx++
	n.pods[p.Name] = p
	n.order = append(n.order, p)
	return p, peer, nil
}

// RemovePod deletes a pod as a runtime deletes a sandbox: its processes
// are killed first (their sockets close and send their FINs), then its
// network namespace, veth and cgroup are removed.
func (n *Node) RemovePod(p *Pod) error {
	err := errors.Join(killCgroup(p.CgroupDir, 5*time.Second), p.destroy())
	n.dropPod(p)
	return errors.Join(err, n.leaveMesh(p))
}

func (n *Node) dropPod(p *Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.pods, p.Name)
	for i, q := range n.order {
		if q == p {
			n.order = append(n.order[:i], n.order[i+1:]...)
			break
		}
	}
}

// create builds the pod; peer, if not nil, is probed for connectivity.
func (p *Pod) create(peer *Pod) error {
	n := p.node
	if err := createNetns(p.Netns); err != nil {
		return err
	}
	if err := os.Mkdir(p.CgroupDir, 0o755); err != nil {
		return fmt.Errorf("create cgroup: %w", err)
	}
	id, err := cgroupv2.ID(p.CgroupDir)
	if err != nil {
		return err
	}
	p.CgroupID = id
	if p.cgroupFD, err = os.Open(p.CgroupDir); err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	if p.Options.Network != nil {
		err = p.externalNetwork()
	} else {
		err = setupPodNet(podNet{
			netns: p.Netns, veth: p.Veth, bridge: n.Bridge, ip4: p.IPv4, ip6: p.IPv6,
			gw4: hostAddr(n.IPv4Net, 1), gw6: hostAddr(n.IPv6Net, 1),
		})
	}
	if err != nil {
		return err
	}
	if err := setPortRange(p.Netns, p.listenPorts()...); err != nil {
		return err
	}
	if peer != nil {
		if err := p.probe(peer); err != nil {
			return err
		}
	}
	if p.Options.BeforeStart != nil {
		if err := p.Options.BeforeStart(p); err != nil {
			return fmt.Errorf("before start: %w", err)
		}
	}
	return p.startServers()
}

// listenPorts are the ports the pod's servers may listen on: its app's and
// the registry's services' (the benchmark's servers).
func (p *Pod) listenPorts() []uint16 {
	ports := []uint16{p.Options.AppPort}
	for _, s := range p.node.services {
		ports = append(ports, s.Port)
	}
	return ports
}

// externalNetwork runs the pod's Network option, then gives the pod's
// loopback what the sidecar needs.
func (p *Pod) externalNetwork() error {
	ip4, ip6, err := p.Options.Network(p)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	p.IPv4, p.IPv6 = ip4, ip6
	return setupLoopback(p.Netns)
}

// probe checks pod-to-pod connectivity in both families.
func (p *Pod) probe(peer *Pod) error {
	for _, dst := range []netip.Addr{peer.IPv4, peer.IPv6} {
		if err := probe(p.Netns, peer.Netns, dst); err != nil {
			return fmt.Errorf("pod %s cannot reach pod %s at %s: %w; %s",
				p.Name, peer.Name, dst, err, hostFirewallHint(p.node.Bridge, dst.Is6()))
		}
	}
	return nil
}

// startServers starts the sidecar and the app, then installs the rules.
func (p *Pod) startServers() error {
	o := p.Options
	switch {
	case o.GoSidecar:
		args := sidecarArgs{Outbound: OutboundPort, Inbound: InboundPort, Splice: o.SidecarSplice}
		sc, err := p.startRole(p.node.ctx, "sidecar", roleSidecar, args, SidecarUID, SidecarGID, true)
		if err != nil {
			return err
		}
		p.sidecar = sc
	case o.Sidecar:
		p.envoy = true
		if _, err := p.startEnvoy(); err != nil { // sets p.sidecar
			return err
		}
	}
	if !o.NoApp {
		app, err := p.startRole(p.node.ctx, "app", roleApp, appArgs{Port: o.AppPort, Pod: p.Name}, o.AppUID, o.AppGID, true)
		if err != nil {
			return err
		}
		p.app = app
	}
	if o.Sidecar {
		return p.SetSidecarRules(true)
	}
	return nil
}

// startRole starts the node's executable in a role in this pod.
func (p *Pod) startRole(ctx context.Context, what, role string, args any, uid, gid uint32, ready bool) (*Proc, error) {
	l := p.launch(what, role, args, uid, gid)
	if ready {
		l.ready = readyPrefix
	}
	return p.startTracked(ctx, l)
}

func (p *Pod) launch(what, role string, args any, uid, gid uint32) launch {
	n := p.node
	return launch{
		name: p.Name + "/" + what, nsenter: n.nsenter, netns: p.Netns, cgroupFD: int(p.cgroupFD.Fd()),
		exe: n.exe, role: role, args: args, uid: uid, gid: gid, env: n.baseEnv(),
	}
}

func (p *Pod) startTracked(ctx context.Context, l launch) (*Proc, error) {
	n := p.node
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("start %s: node is closed", l.name)
	}
	proc, err := start(ctx, l)
	if err != nil {
		return nil, err
	}
	n.track(proc)
	return proc, nil
}

// destroy removes what create made (after a failed AddPod).
func (p *Pod) destroy() error {
	for _, proc := range []*Proc{p.app, p.sidecar} {
		if proc != nil {
			_ = proc.Kill()
		}
	}
	var lerr error
	if p.Veth != "" {
		lerr = deleteLink(p.Veth)
	}
	return errors.Join(killCgroup(p.CgroupDir, 5*time.Second), p.closeCgroupFD(), lerr,
		removeNetns(p.Netns), removeCgroupTree(p.CgroupDir))
}

func (p *Pod) closeCgroupFD() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cgroupFD == nil {
		return nil
	}
	err := p.cgroupFD.Close()
	p.cgroupFD = nil
	return err
}

// Start runs spec.Argv in the pod: in its cgroup from the start, in its
// network namespace, as spec.UID/GID. The process is killed when ctx is done
// and at the latest by [Node.Close]. If spec.Ready is set, Start returns once
// a stdout line contains it.
func (p *Pod) Start(ctx context.Context, spec ProcSpec) (*Proc, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("start: empty Argv")
	}
	p.mu.Lock()
	if p.cgroupFD == nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("start %s: pod %s is closed", spec.Argv[0], p.Name)
	}
	l := p.launch(filepath.Base(spec.Argv[0]), roleExec, spec.Argv, spec.UID, spec.GID)
	p.mu.Unlock()
	l.env = append(l.env, spec.Env...)
	l.stdin, l.ready, l.timeout = spec.Stdin, spec.Ready, spec.ReadyTimeout
	return p.startTracked(ctx, l)
}

// RunClient runs the client role once in the pod as AppUID/AppGID and
// returns its result. An error means the client could not run or report;
// failed checks are in the result (OK, Errors, Mismatches).
func (p *Pod) RunClient(ctx context.Context, c ClientSpec) (*ClientResult, error) {
	p.mu.Lock()
	if p.cgroupFD == nil {
		p.mu.Unlock()
		return nil, fmt.Errorf("client: pod %s is closed", p.Name)
	}
	l := p.launch("client-"+c.Mode, roleClient, c, p.Options.AppUID, p.Options.AppGID)
	p.mu.Unlock()
	proc, err := p.startTracked(ctx, l)
	if err != nil {
		return nil, err
	}
	werr := proc.Wait()
	var res ClientResult
	if err := json.Unmarshal([]byte(proc.Stdout()), &res); err != nil || werr != nil {
		return nil, fmt.Errorf("client %s in pod %s: %w (context: %v); stderr: %s",
			c.Mode, p.Name, errors.Join(werr, err), ctx.Err(), tail(proc.Stderr()))
	}
	return &res, nil
}

// SetSidecarRules installs (on) or removes (off) Istio's nat rules in the
// pod, so that a benchmark can switch between sidecar and direct traffic
// without rebuilding pods. Installing needs a pod created with Sidecar.
func (p *Pod) SetSidecarRules(on bool) error {
	if on && p.sidecar == nil {
		return fmt.Errorf("pod %s has no sidecar", p.Name)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return setIstioRules(p.node.nsenter, p.Netns, on)
}

// RedirectCounts returns how many connections Istio's REDIRECT rules sent to
// the sidecar so far (zero while the rules are off).
func (p *Pod) RedirectCounts() (RedirectCounts, error) {
	return redirectCounts(p.node.nsenter, p.Netns)
}

// Exe is the node's copy of the running executable, which any uid may run
// (for [Pod.Start] of the program's own roles as a non-root user).
func (p *Pod) Exe() string { return p.node.exe }

// AppTarget is the address of the pod's app server as a client Target:
// "10.x.y.n:port", or "[fd..::n]:port" if v6.
func (p *Pod) AppTarget(v6 bool) string {
	a := p.IPv4
	if v6 {
		a = p.IPv6
	}
	return netip.AddrPortFrom(a, p.Options.AppPort).String()
}

// App returns the app server process (nil with NoApp).
func (p *Pod) App() *Proc { return p.app }

// Sidecar returns the sidecar process (nil without Sidecar).
func (p *Pod) Sidecar() *Proc { return p.sidecar }

// String returns the pod's name and addresses.
func (p *Pod) String() string {
	return strings.Join([]string{p.Name, p.IPv4.String(), p.IPv6.String()}, " ")
}
