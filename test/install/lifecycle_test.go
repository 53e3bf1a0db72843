package install

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
)

// wantInstalled checks what a ready installer put on the host: the entry
// last in the runtime's view of the primary config, the binary, the
// kubeconfig and the rules.
func (h *hostNode) wantInstalled() {
	h.t.Helper()
	l := h.runtimeList()
	if last := l.Plugins[len(l.Plugins)-1].Network; len(l.Plugins) != 2 || last.Type != installer.PluginType {
		h.t.Fatalf("runtime's conflist: %d plugins, last %q", len(l.Plugins), last.Type)
	}
	if st, err := os.Stat(filepath.Join(h.binDir, installer.PluginType)); err != nil || st.Mode().Perm() != 0o755 {
		h.t.Errorf("plugin binary: %v, %v", st, err)
	}
	if st, err := os.Stat(h.kubeconfig); err != nil || st.Mode().Perm() != 0o600 {
		h.t.Errorf("kubeconfig: %v, %v", st, err)
	}
	if got := readFile(h.t, h.rulesCopy); got != rules.DefaultText(nodestate.DefaultSidecarUID) {
		h.t.Errorf("rules copy %q", got)
	}
}

// wantUninstalled checks that the conflist has its original bytes and the
// kubeconfig and rules copy are gone.
func (h *hostNode) wantUninstalled() {
	h.t.Helper()
	if got := readFile(h.t, h.conflist); got != h.original {
		h.t.Errorf("conflist after SIGTERM:\n%s\nwant the original:\n%s", got, h.original)
	}
	ents, _ := os.ReadDir(h.confDir)
	if len(ents) != 1 {
		h.t.Errorf("CNI config folder holds %d entries", len(ents))
	}
	for _, p := range []string{h.kubeconfig, h.rulesCopy} {
		if exists(p) {
			h.t.Errorf("%s left after SIGTERM", p)
		}
	}
}

// Install, accelerate two pods created through the resulting conflist,
// delete them, then uninstall with --remove-bpf-on-exit: the conflist is
// back byte for byte, binary and kubeconfig are gone, nothing of mesh-accel
// is left under bpffs, and a new pod created through the restored config
// is not accelerated (the runtime no longer calls the plugin).
func TestInstallUninstall(t *testing.T) {
	h := newHostNode(t)
	inst := startInstaller(t, h.bin, h.flags(true))
	inst.waitReady(t)
	h.wantInstalled()

	list := h.runtimeList()
	a, b := h.addPod("a", false), h.addPod("b", true)
	if !h.record(a) || !h.record(b) || inst.metric(t, installer.MetricPodsAttached) != 2 {
		t.Fatalf("pods not attached: records %v %v", h.record(a), h.record(b))
	}
	got := h.bulk(a, b)
	if got["connections_accepted"] == 0 || got["bytes_redirected"] == 0 {
		t.Fatalf("pods not accelerated: %v", got)
	}
	if inst.metric(t, installer.MetricRedirectedBytes) == 0 {
		t.Error("/metrics shows no redirected bytes")
	}
	for _, p := range []*cnichain.Pod{a, b} {
		if err := h.del(list, p); err != nil {
			t.Fatalf("DEL %s: %v", p.Name, err)
		}
	}

	inst.terminate(t)
	h.wantUninstalled()
	if exists(filepath.Join(h.binDir, installer.PluginType)) {
		t.Error("plugin binary left although no pod was attached")
	}
	if left := h.bpfLeft(); len(left) != 0 {
		t.Errorf("left under bpffs: %v", left)
	}

	c := h.addPod("c", true)
	if h.record(c) || len(h.bpfLeft()) != 0 {
		t.Errorf("a pod created after uninstall was accelerated (record %v, bpffs %v)", h.record(c), h.bpfLeft())
	}
}

// Uninstall that keeps the node state (upgrades): running pods stay
// accelerated after the installer's exit, a restarted installer reuses the
// state, and the binary stays while attached pods remain, so that their
// DEL through the cached config (which still names the plugin) succeeds.
func TestInstallRestartKeepsPods(t *testing.T) {
	h := newHostNode(t)
	t.Cleanup(func() { // the state this test keeps on purpose
		if len(h.bpfLeft()) > 0 {
			h.removeNodeState()
		}
	})
	inst := startInstaller(t, h.bin, h.flags(false))
	inst.waitReady(t)
	cached := h.runtimeList()
	a, b := h.addPod("a", false), h.addPod("b", true)

	inst.terminate(t)
	h.wantUninstalled()
	if !exists(filepath.Join(h.binDir, installer.PluginType)) {
		t.Fatal("plugin binary removed while pods attached by it remain")
	}
	if got := h.bulk(a, b); got["connections_accepted"] == 0 || got["bytes_redirected"] == 0 {
		t.Errorf("running pods lost their acceleration with the installer: %v", got)
	}

	again := startInstaller(t, h.bin, h.flags(false))
	again.waitReady(t)
	if n := again.metric(t, installer.MetricPodsAttached); n != 2 {
		t.Errorf("restarted installer sees %v pods, want the 2 running ones", n)
	}
	again.terminate(t)
	h.wantUninstalled()

	for _, p := range []*cnichain.Pod{a, b} {
		if err := h.del(cached, p); err != nil {
			t.Errorf("DEL of %s through the cached config after uninstall: %v", p.Name, err)
		}
		if h.record(p) {
			t.Errorf("DEL left the record of %s", p.Name)
		}
	}
	c := h.addPod("c", true)
	if h.record(c) {
		t.Error("a pod created after uninstall was accelerated")
	}
}
