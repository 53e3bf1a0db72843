package plugin

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// realEnv is an env whose engine is real node state (a unique bpffs root)
// and whose pod cgroups are real, under a unique test cgroup.
type realEnv struct {
	*env
	node   *bpf.Node
	cgroup string // the test's cgroup; pods' cgroups are <cgroup>/pod<uid>
}

func newRealEnv(t *testing.T) *realEnv {
	t.Helper()
	n := bpftest.NewNode(t, bpf.Options{})
	e := newEnv(t)
	e.conf["bpfRoot"] = filepath.Dir(n.Dir())
	conf, err := parseConfig(mustJSON(t, e.conf))
	if err != nil {
		t.Fatal(err)
	}
	e.eng = nil
	r := &realEnv{env: e, node: n, cgroup: testCgroup(t)}
	e.cgroups = fakeCgroups{root: r.cgroup}
	e.engine = bpfEngine{opts: conf.bpfOptions()}
	return r
}

// testCgroup creates a cgroup for the test and removes it (and its
// children) at cleanup.
func testCgroup(t *testing.T) string {
	t.Helper()
	mount, err := cgroupv2.Mount()
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	dir := filepath.Join(mount, "mesh-accel-plugin-test-"+hex.EncodeToString(b))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.IsDir() {
				_ = os.Remove(filepath.Join(dir, e.Name()))
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	return dir
}

func (r *realEnv) attached(uid string) *bpf.PodInfo {
	r.t.Helper()
	pods, err := r.node.Pods()
	if err != nil {
		r.t.Fatal(err)
	}
	for i := range pods {
		if pods[i].ID == uid {
			return &pods[i]
		}
	}
	return nil
}

// The plugin's commands on real node state: ADD attaches to the pod's
// cgroup with the pod's rules, CHECK agrees, a repeated ADD updates, DEL
// removes the pins, also once the cgroup is gone, and GC removes stale pods.
func TestRealEngine(t *testing.T) {
	r := newRealEnv(t)
	a, b := enabledPod("a"), enabledPod("b")
	a.ann[AnnotationExcludeInboundPorts] = "9000"
	dirA, dirB := r.mkCgroup(a), r.mkCgroup(b)
	r.mustAdd(a, nil)
	r.mustAdd(b, nil)
	info := r.attached(a.uid)
	if id, _ := cgroupv2.ID(dirA); info == nil || info.CgroupID != id || len(info.Config.Rules.Rules) != 3 {
		t.Fatalf("pod a: %+v", info)
	}
	if err := r.call("CHECK", doCheck, r.args(a, nil)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	a.ann[AnnotationTrustApp] = "true"
	r.mustAdd(a, nil)
	if info := r.attached(a.uid); info == nil || !info.Config.TrustApp {
		t.Errorf("repeated ADD did not update: %+v", info)
	}
	if err := r.call("STATUS", doStatus, r.args(pod{}, nil)); err != nil {
		t.Errorf("STATUS: %v", err)
	}

	podDir := filepath.Join(r.node.Dir(), "pods", a.uid)
	if _, err := os.Stat(podDir); err != nil {
		t.Fatalf("no pins for pod a: %v", err)
	}
	if err := r.del(a, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(podDir); !os.IsNotExist(err) || r.attached(a.uid) != nil {
		t.Errorf("DEL left pod a: %v", err)
	}

	// b's cgroup goes first (the runtime removed it): DEL still succeeds.
	if err := os.Remove(dirB); err != nil {
		t.Fatal(err)
	}
	if err := r.del(b, nil); err != nil {
		t.Fatalf("DEL after the cgroup went: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.node.Dir(), "pods", b.uid)); !os.IsNotExist(err) {
		t.Errorf("DEL left pod b's pins: %v", err)
	}
	if f := r.failures(); len(f) != 0 {
		t.Errorf("failures counted: %+v", f)
	}

	// GC: c is stale.
	c := enabledPod("c")
	r.mkCgroup(c)
	r.mustAdd(c, nil)
	if err := r.call("GC", doGC, r.args(pod{}, map[string]any{"cni.dev/valid-attachments": []any{}})); err != nil {
		t.Fatal(err)
	}
	if r.attached(c.uid) != nil {
		t.Error("GC left pod c attached")
	}
}

// STATUS on a node without state, and an ADD there (fail-open: the node
// state is created by the ADD itself).
func TestRealEngineNoState(t *testing.T) {
	r := newRealEnv(t)
	root := filepath.Join(filepath.Dir(r.conf["bpfRoot"].(string)), bpftest.UniqueRoot())
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	r.conf["bpfRoot"] = root
	conf, err := parseConfig(mustJSON(t, r.conf))
	if err != nil {
		t.Fatal(err)
	}
	r.engine = bpfEngine{opts: conf.bpfOptions()}
	err = r.call("STATUS", doStatus, r.args(pod{}, nil))
	if errCode(err) != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), root) {
		t.Errorf("STATUS without node state = %v", err)
	}
	// DEL does not create node state.
	if err := r.del(enabledPod("x"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("DEL created %s: %v", root, err)
	}
	p := enabledPod("y")
	r.mkCgroup(p)
	r.mustAdd(p, nil)
	n, err := bpf.OpenNode(conf.bpfOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
	if pods, err := n.Pods(); err != nil || len(pods) != 1 {
		t.Errorf("pods after ADD on a fresh node: %+v, %v", pods, err)
	}
}

// On a kernel older than bpf.MinKernel the real engine refuses to open the
// node state: the ADD succeeds without acceleration, and the failure is
// counted under "kernel" with the reason.
func TestRealEngineKernelTooOld(t *testing.T) {
	r := newRealEnv(t)
	saved := bpf.MinKernel
	bpf.MinKernel = [2]int{99, 0}
	t.Cleanup(func() { bpf.MinKernel = saved })
	p := enabledPod("old")
	r.mkCgroup(p)
	if err := r.add(p, nil); err != nil {
		t.Fatalf("ADD on a too old kernel = %v, want the pod to start without acceleration", err)
	}
	if r.attached(p.uid) != nil {
		t.Error("pod attached on a too old kernel")
	}
	if f := r.failures()[ReasonKernel]; f.Count != 1 || !strings.Contains(f.LastError, "older than 99.0, the oldest kernel mesh-accel is tested on") {
		t.Errorf("failures %+v, want one %q naming the kernel", r.failures(), ReasonKernel)
	}
}
