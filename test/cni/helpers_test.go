package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// The plugins a chain runs: the reference plugins at the version in go.mod,
// and ours.
var pluginPackages = []string{
	"github.com/containernetworking/plugins/plugins/main/loopback",
	"github.com/containernetworking/plugins/plugins/main/bridge",
	"github.com/containernetworking/plugins/plugins/ipam/host-local",
	"github.com/mesh-accel/mesh-accel/plugin/cmd/mesh-accel",
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

// binaries builds the plugins once per test run (static, as the Makefile
// builds) and returns their folder; TestMain removes it.
func binaries(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "mesh-accel-cni-bin-")
		if build.err != nil {
			return
		}
		cmd := exec.Command(goTool(), append([]string{"build", "-o", build.dir + "/"}, pluginPackages...)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("build the CNI plugins: %w\n%s", err, out)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.dir
}

// goTool is the go command that built this test, else the one in PATH.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// quietExec runs plugins without passing their stderr on.
var quietExec = &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: io.Discard}, PluginDecoder: version.PluginDecoder{}}

// chainParams are what a conflist varies in.
type chainParams struct {
	Name, Bridge, Subnet string
	IPAMDir, BPFRoot     string
	StateDir, LogFile    string
	Kubeconfig           string // set: no annotations capability (API fallback)
	FailOnError          bool
}

// conflist renders the chain: bridge with host-local, then mesh-accel with
// the capabilities containerd serves.
func conflist(p chainParams) []byte {
	caps := map[string]bool{plugin.CapCgroupPath: true}
	mesh := map[string]any{
		"type": plugin.TypeName, "bpfRoot": p.BPFRoot, "stateDir": p.StateDir, "logFile": p.LogFile,
		"logLevel": "debug", "failOnError": p.FailOnError, "apiTimeout": "3s", "capabilities": caps,
	}
	if p.Kubeconfig != "" {
		mesh["kubeconfig"] = p.Kubeconfig
	} else {
		caps[plugin.CapPodAnnotations] = true
	}
	list := map[string]any{
		"cniVersion": "1.1.0", "name": p.Name,
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": p.Bridge, "isGateway": false, "ipMasq": false,
				"ipam": map[string]any{
					"type": "host-local", "dataDir": p.IPAMDir,
					"ranges": []any{[]any{map[string]string{"subnet": p.Subnet}}},
				},
			},
			mesh,
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// chain is a simulated node whose pods get their network from a real CNI
// chain driven through libcni, and their acceleration from mesh-accel.
type chain struct {
	t      *testing.T
	sim    *sim.Node
	node   *bpf.Node
	bin    string
	params chainParams
	cni    *libcni.CNIConfig
	list   *libcni.NetworkConfigList
	lo     *libcni.NetworkConfigList
}

// newChain builds the node. kubeconfig, when set, replaces the annotations
// capability.
func newChain(t *testing.T, kubeconfig string, failOnError bool) *chain {
	t.Helper()
	testenv.RequireRoot(t)
	bin := binaries(t)
	c := &chain{t: t, sim: sim.NewTestNode(t, sim.NodeOptions{Prefix: "mc"}), bin: bin}
	c.node = bpftest.NewNode(t, bpf.Options{})
	subnet, err := sim.FreeIPv4Subnet()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	c.params = chainParams{
		Name: "mesh-test-" + randHex(4), Bridge: "mcb" + randHex(5), Subnet: subnet.String(),
		IPAMDir: filepath.Join(tmp, "ipam"), BPFRoot: filepath.Dir(c.node.Dir()),
		StateDir: filepath.Join(tmp, "state"), LogFile: filepath.Join(tmp, "log", "cni.log"),
		Kubeconfig: kubeconfig, FailOnError: failOnError,
	}
	t.Cleanup(func() { deleteLink(t, c.params.Bridge) }) // after the pods' DELs
	if err := createBridge(c.params.Bridge); err != nil {
		t.Fatal(err)
	}
	// The plugins' stderr is not the test's: mesh-accel's lines are in its
	// log file, shown when the test fails.
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(tmp, "cache"), quietExec)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(c.params.LogFile)
			t.Logf("mesh-accel log:\n%s", b)
		}
	})
	if c.list, err = libcni.ConfListFromBytes(conflist(c.params)); err != nil {
		t.Fatal(err)
	}
	lo := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"lo-%s","plugins":[{"type":"loopback"}]}`, randHex(4))
	if c.lo, err = libcni.ConfListFromBytes([]byte(lo)); err != nil {
		t.Fatal(err)
	}
	return c
}

// createBridge creates the chain's bridge before the bridge plugin, which
// then uses it, with a fixed MAC address: a bridge without one takes the
// lowest of its ports', which changes as pods come and go, and the bridge
// plugin's CHECK then fails on the MAC of its earlier result.
func createBridge(name string) error {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02 // unicast, locally administered
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", name, err)
	}
	return nil
}

func deleteLink(tb testing.TB, name string) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return
	}
	if err := netlink.LinkDel(l); err != nil {
		tb.Errorf("delete %s: %v", name, err)
	}
}

// cniPod is a simulated pod as the runtime knows it.
type cniPod struct {
	*sim.Pod
	UID, Container string
	Annotations    map[string]string
	Result         *current.Result
	rt             *libcni.RuntimeConf
}

// podSpec is what a test asks of a pod.
type podSpec struct {
	name           string
	uid            string            // generated when empty
	ann            map[string]string // nil: not annotated
	sidecar, noApp bool
}

// accelerated annotates a pod for acceleration.
var accelerated = map[string]string{plugin.AnnotationEnabled: "true"}

// addPod creates the pod; its network is made by the chain (loopback, then
// the conflist) and removed again at the test's end.
func (c *chain) addPod(s podSpec) (*cniPod, error) {
	if s.uid == "" {
		s.uid = "uid-" + s.name + "-" + randHex(4)
	}
	p := &cniPod{UID: s.uid, Container: "ctr-" + randHex(16), Annotations: s.ann}
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	opts := sim.PodOptions{Name: s.name, Sidecar: s.sidecar, NoApp: s.noApp, Network: func(sp *sim.Pod) (netip.Addr, netip.Addr, error) {
		p.rt = c.runtimeConf(sp, p)
		c.t.Cleanup(func() { c.delPod(p) }) // before the node goes
		ip, err := c.addNetwork(p)
		return ip, netip.Addr{}, err
	}}
	sp, err := c.sim.AddPod(opts)
	if err != nil {
		return nil, err
	}
	p.Pod = sp
	return p, nil
}

func (c *chain) mustAddPod(s podSpec) *cniPod {
	c.t.Helper()
	p, err := c.addPod(s)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *chain) runtimeConf(sp *sim.Pod, p *cniPod) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.Container, NetNS: sp.Netns, IfName: "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "default"}, {"K8S_POD_NAME", sp.Name},
			{"K8S_POD_UID", p.UID}, {"K8S_POD_INFRA_CONTAINER_ID", p.Container},
		},
		CapabilityArgs: map[string]any{plugin.CapPodAnnotations: p.Annotations, plugin.CapCgroupPath: sp.CgroupDir},
	}
}

// addNetwork runs loopback and the chain's ADD and returns the pod's IPv4.
func (c *chain) addNetwork(p *cniPod) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.cni.AddNetworkList(ctx, c.lo, p.rt); err != nil {
		return netip.Addr{}, fmt.Errorf("loopback ADD: %w", err)
	}
	res, err := c.cni.AddNetworkList(ctx, c.list, p.rt)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("chain ADD: %w", err)
	}
	if p.Result, err = current.NewResultFromResult(res); err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range p.Result.IPs {
		if a, ok := netip.AddrFromSlice(ip.Address.IP); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("chain ADD gave no IPv4: %v", p.Result)
}

// delPod runs the chain's DEL (idempotent: tests may have run it already).
func (c *chain) delPod(p *cniPod) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := errors.Join(c.cni.DelNetworkList(ctx, c.list, p.rt), c.cni.DelNetworkList(ctx, c.lo, p.rt)); err != nil {
		c.t.Errorf("DEL of pod %s: %v", p.Name, err)
	}
}

// del runs the chain's DEL now.
func (c *chain) del(p *cniPod) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.cni.DelNetworkList(ctx, c.list, p.rt)
}

// attached returns the engine's view of the pod, or nil.
func (c *chain) attached(p *cniPod) *bpf.PodInfo {
	c.t.Helper()
	pods, err := c.node.Pods()
	if err != nil {
		c.t.Fatal(err)
	}
	for i := range pods {
		if pods[i].ID == p.UID {
			return &pods[i]
		}
	}
	return nil
}

// wantAttached fails unless the pod is attached to its own cgroup.
func (c *chain) wantAttached(p *cniPod) *bpf.PodInfo {
	c.t.Helper()
	info := c.attached(p)
	if info == nil || info.CgroupID != p.CgroupID {
		c.t.Fatalf("pod %s not attached to its cgroup %d: %+v", p.Name, p.CgroupID, info)
	}
	return info
}

// wantGone fails unless nothing of the pod is left: no pins, no program
// on its cgroup, no rules in the map, no record.
func (c *chain) wantGone(p *cniPod) {
	c.t.Helper()
	if c.attached(p) != nil {
		c.t.Errorf("pod %s still listed", p.Name)
	}
	for _, path := range []string{
		filepath.Join(c.node.Dir(), "pods", p.UID),
		filepath.Join(c.params.StateDir, "pods", p.UID+".json"),
	} {
		if fileExists(path) {
			c.t.Errorf("pod %s: %s left", p.Name, path)
		}
	}
	cg, err := os.Open(p.CgroupDir)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cg.Close()
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupSockOps, ebpf.AttachCGroupInetSockCreate} {
		q, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil || len(q.Programs) != 0 {
			c.t.Errorf("pod %s: programs on its cgroup (%v): %+v, %v", p.Name, at, q, err)
		}
	}
	m, err := ebpf.LoadPinnedMap(filepath.Join(c.node.Dir(), "maps", "sock_param_map"), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	defer m.Close()
	var v []byte
	if err := m.Lookup(p.CgroupID, &v); !errors.Is(err, ebpf.ErrKeyNotExist) {
		c.t.Errorf("pod %s: rules left in sock_param_map (%v)", p.Name, err)
	}
}

func (c *chain) counters() bpf.Counters {
	c.t.Helper()
	n, err := c.node.Counters()
	if err != nil {
		c.t.Fatal(err)
	}
	return n
}

// run runs a client in the pod, fails the test unless it passed, and
// returns the counters' change once the connections have left the maps.
func (c *chain) run(p *cniPod, spec sim.ClientSpec) (*sim.ClientResult, bpf.Counters) {
	c.t.Helper()
	before := c.counters()
	res := p.RunTestClient(c.t, spec)
	if !res.OK {
		c.t.Fatalf("client %s in %s: %v", spec.Mode, p.Name, res.Errors)
	}
	c.waitNoConns()
	return res, c.counters().Sub(before)
}

// waitNoConns waits until the connection maps are empty.
func (c *chain) waitNoConns() {
	c.t.Helper()
	var u bpf.Usage
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if u, err = c.node.Usage(); err != nil {
			c.t.Fatal(err)
		}
		if u.Sockets == 0 && u.Directions == 0 && u.Pending == 0 {
			return
		}
	}
	c.t.Fatalf("connection maps not empty after the connections closed: %+v", u)
}

// pluginConf is mesh-accel's entry of the conflist as the runtime derives
// it for one call: name and version injected (the previous result's
// version when there is one), capabilities turned into runtimeConfig.
func (c *chain) pluginConf(p *cniPod, prevResult types.Result) []byte {
	c.t.Helper()
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(c.list.Bytes, &list); err != nil {
		c.t.Fatal(err)
	}
	conf := list.Plugins[1]
	delete(conf, "capabilities")
	conf["name"], conf["cniVersion"] = c.list.Name, c.list.CNIVersion
	if p != nil {
		conf["runtimeConfig"] = map[string]any{plugin.CapPodAnnotations: p.Annotations, plugin.CapCgroupPath: p.CgroupDir}
	}
	if prevResult != nil {
		conf["prevResult"], conf["cniVersion"] = prevResult, prevResult.Version()
	}
	b, err := json.Marshal(conf)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}
