package cni

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

var build struct {
	once sync.Once
	dir  string
	err  error
}

// binaries builds the plugins once per test run and returns their folder;
// TestMain removes it.
func binaries(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "mesh-accel-cni-bin-")
		if build.err == nil {
			build.err = cnichain.BuildPlugins(build.dir)
		}
	})
	if build.err != nil {
		tb.Fatal(build.err)
	}
	return build.dir
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

var randHex = cnichain.RandHex

// chainParams are what a conflist varies in.
type chainParams = cnichain.Params

// conflist renders a chain's conflist.
var conflist = cnichain.Conflist

// chain is a simulated node whose pods get their network from a real CNI
// chain driven through libcni, and their acceleration from mesh-accel.
type chain struct {
	*cnichain.Chain
	t      *testing.T
	sim    *sim.Node
	node   *bpf.Node
	bin    string
	params chainParams
}

// newChain builds the node. kubeconfig, when set, replaces the annotations
// capability.
func newChain(t *testing.T, kubeconfig string, failOnError bool) *chain {
	t.Helper()
	testenv.RequireRoot(t)
	bin := binaries(t)
	c := &chain{t: t, sim: sim.NewTestNode(t, sim.NodeOptions{Prefix: "mc"}), bin: bin}
	c.node = bpftest.NewNode(t, bpf.Options{})
	tmp := t.TempDir()
	params, err := cnichain.DefaultParams(tmp, filepath.Dir(c.node.Dir()))
	if err != nil {
		t.Fatal(err)
	}
	params.Name = "mesh-test-" + randHex(4)
	params.LogLevel, params.APITimeout = "debug", "3s"
	params.Kubeconfig, params.FailOnError = kubeconfig, failOnError
	c.params = params
	t.Cleanup(func() { deleteLink(t, c.params.Bridge) }) // after the pods' DELs
	// The plugins' stderr is not the test's: mesh-accel's lines are in its
	// log file, shown when the test fails.
	if c.Chain, err = cnichain.New(bin, tmp, params); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(c.params.LogFile)
			t.Logf("mesh-accel log:\n%s", b)
		}
	})
	return c
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
type cniPod = cnichain.Pod

// podSpec is what a test asks of a pod.
type podSpec struct {
	name           string
	uid            string            // generated when empty
	ann            map[string]string // nil: not annotated
	sidecar, noApp bool
}

// accelerated annotates a pod for acceleration with the sidecar-hops
// profile: the sidecar-to-sidecar hop is paired both ways, the app hops
// (apps not declared recvmsg readers) are left alone.
var accelerated = map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationProfile: plugin.ProfileSidecarHops}

// acceleratedTrusted also declares the app a recvmsg reader: its hops
// with the sidecar are paired too.
var acceleratedTrusted = map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationTrustApp: "true"}

// addPod creates the pod; its network is made by the chain (loopback, then
// the conflist) and removed again at the test's end.
func (c *chain) addPod(s podSpec) (*cniPod, error) {
	opts := sim.PodOptions{Name: s.name, Sidecar: s.sidecar, NoApp: s.noApp}
	return c.AddPod(c.sim, opts, s.uid, s.ann, func(p *cniPod) {
		c.t.Cleanup(func() { c.delPod(p) }) // before the node goes
	})
}

func (c *chain) mustAddPod(s podSpec) *cniPod {
	c.t.Helper()
	p, err := c.addPod(s)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// delPod runs the chain's DEL (idempotent: tests may have run it already).
func (c *chain) delPod(p *cniPod) {
	if err := c.DelPod(p); err != nil {
		c.t.Errorf("DEL of pod %s: %v", p.Name, err)
	}
}

// del runs the chain's DEL now.
func (c *chain) del(p *cniPod) error { return c.Del(p) }

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
	res := p.RunCheckedClient(c.t, spec)
	c.waitNoConns()
	return res, c.counters().Sub(before)
}

// waitNoConns waits until the connection maps are empty.
func (c *chain) waitNoConns() {
	c.t.Helper()
	bpftest.WaitConnsGone(c.t, c.node)
}

// pluginConf is mesh-accel's entry of the conflist as the runtime derives
// it for one call: name and version injected (the previous result's
// version when there is one), capabilities turned into runtimeConfig.
func (c *chain) pluginConf(p *cniPod, prevResult types.Result) []byte {
	c.t.Helper()
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(c.List.Bytes, &list); err != nil {
		c.t.Fatal(err)
	}
	conf := list.Plugins[1]
	delete(conf, "capabilities")
	conf["name"], conf["cniVersion"] = c.List.Name, c.List.CNIVersion
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
