package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// hostNode is a temporary node: a simulated node for the pods, the host's
// CNI folders whose primary config is a bridge + host-local conflist, and a
// unique bpffs root. Pods get their network from whatever the CNI config
// folder holds, through libcni (package cnichain), as a runtime would.
type hostNode struct {
	t                     *testing.T
	sim                   *sim.Node
	chain                 *cnichain.Chain
	bin, tmp              string
	binDir, confDir       string
	conflist, original    string // the primary config and its bytes
	bpfRoot               string
	kubeconfig, rulesCopy string
}

func newHostNode(t *testing.T) *hostNode {
	t.Helper()
	testenv.RequireRoot(t)
	if err := bpf.CheckKernel(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	h := &hostNode{t: t, bin: binaries(t), sim: sim.NewTestNode(t, sim.NodeOptions{Prefix: "mi"}), tmp: t.TempDir()}
	h.binDir, h.confDir = filepath.Join(h.tmp, "opt/cni/bin"), filepath.Join(h.tmp, "etc/cni/net.d")
	h.bpfRoot = bpftest.UniqueRoot()
	h.kubeconfig, h.rulesCopy = filepath.Join(h.tmp, "etc/mesh-accel/kubeconfig"), filepath.Join(h.tmp, "etc/mesh-accel/rules")
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot)) })
	for _, p := range []string{"loopback", "bridge", "host-local"} {
		writeFile(t, filepath.Join(h.binDir, p), readFile(t, filepath.Join(h.bin, p)), 0o755)
	}
	params, err := cnichain.DefaultParams(h.tmp, filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot))
	if err != nil {
		t.Fatal(err)
	}
	if h.chain, err = cnichain.New(h.binDir, h.tmp, params); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.chain.Close() }) // after the pods' DELs
	h.original = fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "ranges": [[{"subnet": %q}]]
      }
    }
  ]
}
`, params.Name, params.Bridge, params.IPAMDir, params.Subnet)
	h.conflist = filepath.Join(h.confDir, "10-bridge.conflist")
	writeFile(t, h.conflist, h.original, 0o644)
	writeFile(t, filepath.Join(h.tmp, "sa/token"), "e2e-token", 0o644)
	writeFile(t, filepath.Join(h.tmp, "sa/ca.crt"), "e2e-ca", 0o644)
	writeFile(t, filepath.Join(h.tmp, "rules/rules"), rules.DefaultText(nodestate.DefaultSidecarUID), 0o644)
	return h
}

// flags configure the installer for this node; the host paths are the
// container paths (no container here).
func (h *hostNode) flags(removeBPF bool) map[string]string {
	p := h.chain.Params
	return map[string]string{
		installer.FlagHostCNIBinDir: h.binDir, installer.FlagHostCNIConfDir: h.confDir,
		installer.FlagPluginBinary: filepath.Join(h.bin, "mesh-accel"), installer.FlagKubeconfigPath: h.kubeconfig,
		installer.FlagHostKubeconfigPath: h.kubeconfig, installer.FlagRulesFile: filepath.Join(h.tmp, "rules/rules"),
		installer.FlagRulesCopyPath: h.rulesCopy, installer.FlagHostRulesFile: h.rulesCopy,
		installer.FlagBPFRoot: h.bpfRoot, installer.FlagStateDir: p.StateDir,
		installer.FlagPluginLogFile: p.LogFile, installer.FlagCgroupRoot: "",
		installer.FlagSAToken: filepath.Join(h.tmp, "sa/token"), installer.FlagSACA: filepath.Join(h.tmp, "sa/ca.crt"),
		installer.FlagAPIHost: "https://127.0.0.1:6443", installer.FlagRemoveBPFOnExit: fmt.Sprint(removeBPF),
		installer.FlagLogLevel: "debug",
	}
}

// runtimeList loads the primary config the way containerd does: the first
// config file by name.
func (h *hostNode) runtimeList() *libcni.NetworkConfigList {
	h.t.Helper()
	files, err := libcni.ConfFiles(h.confDir, []string{".conf", ".conflist", ".json"})
	if err != nil || len(files) == 0 {
		h.t.Fatalf("CNI configs: %v, %v", files, err)
	}
	sort.Strings(files)
	l, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// addPod creates a pod with a sidecar, annotated for acceleration (its app
// declared a recvmsg reader, so that its hops are paired), whose
// network comes from what the CNI config folder holds now.
func (h *hostNode) addPod(name string, app bool) *cnichain.Pod {
	h.t.Helper()
	h.chain.List = h.runtimeList()
	p, err := h.chain.AddPod(h.sim, sim.PodOptions{Name: name, Sidecar: true, NoApp: !app}, "",
		map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationTrustApp: "true"},
		func(p *cnichain.Pod) { h.t.Cleanup(func() { _ = h.chain.DelPod(p) }) }) // before the node goes
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// del runs the pod's DEL through list, the config the runtime cached for
// it.
func (h *hostNode) del(list *libcni.NetworkConfigList, p *cnichain.Pod) error {
	h.chain.List = list
	return h.chain.Del(p)
}

// record reports whether the plugin recorded the pod as attached.
func (h *hostNode) record(p *cnichain.Pod) bool {
	return exists(filepath.Join(h.chain.Params.StateDir, "pods", p.UID+".json"))
}

// counters reads the engine's counters from the node state (which must
// exist).
func (h *hostNode) counters() bpf.Counters {
	h.t.Helper()
	n, err := bpf.OpenNode(bpf.Options{Root: h.bpfRoot})
	if err != nil {
		h.t.Fatal(err)
	}
	defer n.Close()
	c, err := n.Counters()
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

// bulk sends a stream from a to b's app through both sidecars and returns
// the counters' change.
func (h *hostNode) bulk(a, b *cnichain.Pod) bpf.Counters {
	h.t.Helper()
	before := h.counters()
	res := a.RunTestClient(h.t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})
	if !res.OK {
		h.t.Fatalf("client a->b: %v", res.Errors)
	}
	return h.counters().Sub(before)
}

// bpfLeft lists what is left under the node's bpffs root.
func (h *hostNode) bpfLeft() []string {
	var left []string
	_ = filepath.Walk(filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot), func(p string, _ os.FileInfo, err error) error {
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			left = append(left, strings.TrimPrefix(p, nodestate.DefaultBPFFS+"/"))
		}
		return nil
	})
	return left
}

// removeNodeState removes the node state a test kept on purpose.
func (h *hostNode) removeNodeState() {
	n, err := bpf.OpenNode(bpf.Options{Root: h.bpfRoot})
	if err != nil {
		h.t.Errorf("open node state to remove it: %v", err)
		return
	}
	if err := n.Remove(); err != nil {
		h.t.Errorf("remove node state: %v", err)
	}
}
