package installer

import (
	"errors"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/metrics"
	"github.com/mesh-accel/mesh-accel/installer/pluginlog"
	"github.com/mesh-accel/mesh-accel/internal/eventspool"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/nsoptin"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
)

// The whole life of an installer on a node whose primary CNI is a bridge
// conflist: everything in place and ready; the primary CNI rewrites its
// file and the watcher puts the entry back; a second start changes
// nothing; the stop (SIGTERM) gives back the conflist byte for byte and
// removes the binary, the kubeconfig and the rules copy, and keeps the node
// state.
func TestRunLifecycle(t *testing.T) {
	h := newHost(t)
	conf := filepath.Join(h.cfg.HostCNIConfDir, "10-bridge.conflist")
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	if err := os.Chmod(conf, 0o600); err != nil {
		t.Fatal(err)
	}
	eng := newFakeEngine(t)
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)

	bin := filepath.Join(h.cfg.HostCNIBinDir, PluginType)
	if fileMode(t, bin) != 0o755 || readTree(t, h.cfg.HostCNIBinDir)[PluginType] != "#!/bin/false plugin v1\n" {
		t.Errorf("plugin binary: mode %v, files %v", fileMode(t, bin), readTree(t, h.cfg.HostCNIBinDir))
	}
	if fileMode(t, h.cfg.KubeconfigPath) != 0o600 {
		t.Errorf("kubeconfig mode %v, want 0600", fileMode(t, h.cfg.KubeconfigPath))
	}
	if b, _ := os.ReadFile(h.cfg.RulesCopyPath); string(b) != rules.DefaultText(nodestate.DefaultSidecarUID) {
		t.Errorf("rules copy: %q", b)
	}
	installed, _ := os.ReadFile(conf)
	if fileMode(t, conf) != 0o600 || !strings.Contains(string(installed), `"rulesFile": "/etc/mesh-accel/rules"`) {
		t.Fatalf("conflist (mode %v):\n%s", fileMode(t, conf), installed)
	}

	replaceWith(t, conf, bridgeConflist) // the primary CNI writes its config again
	waitFor(t, "the entry put back", func() bool { return fileio.SameContent(conf, installed) })
	r.waitReady(t)
	// The repair is counted right after its write: wait for it.
	waitFor(t, "the repair counted", func() bool { return metricValue(t, r, MetricConflistRepairs, "") >= 1 })
	if v := metricValue(t, r, MetricConflistRepairs, ""); v != 1 {
		t.Errorf("%s = %v, want 1", MetricConflistRepairs, v)
	}

	if err := r.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
	sameTree(t, "CNI config folder after stop", h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	if fileMode(t, conf) != 0o600 {
		t.Errorf("mode after stop %v", fileMode(t, conf))
	}
	for _, p := range []string{bin, h.cfg.KubeconfigPath, h.cfg.RulesCopyPath} {
		if exists(p) {
			t.Errorf("%s left after stop", p)
		}
	}
	if opens, closes, removes := eng.node.stats(); opens != 1 || closes != 1 || removes != 0 {
		t.Errorf("node state: %d opens, %d closes, %d removes; want it kept", opens, closes, removes)
	}
}

// An installer killed without its SIGTERM cleanup leaves everything in
// place; the next one finds it so and writes nothing (one entry), and its
// stop still gives back the original bytes.
func TestRunRestart(t *testing.T) {
	h := newHost(t)
	conf := filepath.Join(h.cfg.HostCNIConfDir, "10-bridge.conflist")
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	in := newInstaller(h.cfg, Deps{Engine: eng, Log: testLog(t), PluginVersions: func(string) ([]string, error) { return nil, nil }},
		metrics.New(), &readiness{})
	in.d.defaults()
	if err := in.setup(); err != nil { // then "killed": no teardown
		t.Fatal(err)
	}
	installed := readTree(t, h.root)
	infoBefore, _ := os.Stat(conf)

	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	sameTree(t, "host after the restart", h.root, installed)
	if infoAfter, _ := os.Stat(conf); !os.SameFile(infoBefore, infoAfter) {
		t.Error("conflist rewritten by the restart")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	sameTree(t, "CNI config folder after stop", h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
}

// An installer whose start fails (here: the node state cannot be opened)
// after a predecessor was killed takes the predecessor's entry out (from
// its backup, byte for byte) and then the binary: no config is left naming
// a plugin whose node state is missing. Run reports the failure.
func TestRunSetupFails(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	in := newInstaller(h.cfg, Deps{Engine: newFakeEngine(t), Log: testLog(t), PluginVersions: func(string) ([]string, error) { return nil, nil }},
		metrics.New(), &readiness{})
	in.d.defaults()
	if err := in.setup(); err != nil { // then "killed": no teardown
		t.Fatal(err)
	}
	eng := newFakeEngine(t)
	eng.openErr = errors.New("pinned map sock_ops_map: incompatible")
	r := h.start(t, Deps{Engine: eng})
	if err := r.stop(t); err == nil || !strings.Contains(err.Error(), "incompatible") {
		t.Fatalf("Run = %v, want the open error", err)
	}
	sameTree(t, "CNI config folder", h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	if exists(filepath.Join(h.cfg.HostCNIBinDir, PluginType)) {
		t.Error("plugin binary left")
	}
}

// A primary config that is missing, zero bytes or invalid is never written
// to: the installer reports it (/readyz 503 naming the file) and installs
// as soon as the primary CNI writes a valid one.
func TestRunWaitsForPrimary(t *testing.T) {
	for _, tc := range []struct{ name, content, reason string }{
		{"missing", "", "no CNI config"},
		{"zero bytes", "", "is empty (0 bytes)"},
		{"invalid", `{"name": "k8s-pod-network", "plugins": [{"type": "calico",`, "is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			conf := filepath.Join(h.cfg.HostCNIConfDir, "10-calico.conflist")
			before := map[string]string{}
			if tc.name != "missing" {
				before["10-calico.conflist"] = tc.content
				writeTree(t, h.cfg.HostCNIConfDir, before)
			}
			r := h.start(t, Deps{})
			waitFor(t, "the reason on /readyz", func() bool {
				code, body := r.get(t, PathReady)
				return code == http.StatusServiceUnavailable && strings.Contains(body, tc.reason)
			})
			if !exists(filepath.Join(h.cfg.HostCNIBinDir, PluginType)) {
				t.Error("plugin binary not installed while waiting")
			}
			sameTree(t, "CNI config folder while waiting", h.cfg.HostCNIConfDir, before)
			replaceWith(t, conf, bridgeConflist)
			r.waitReady(t)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			sameTree(t, "CNI config folder after stop", h.cfg.HostCNIConfDir, map[string]string{"10-calico.conflist": bridgeConflist})
		})
	}
}

// A kernel without what mesh-accel needs: nothing is installed, the node
// is ready but inactive (a rollout or an uninstall must not wait for it),
// /readyz names what is missing, mesh_accel_node_active is 0, and the stop
// succeeds.
func TestRunKernelMissing(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	eng.kernelErr = errors.New("kernel lacks what mesh-accel needs: sk_msg programs: not supported")
	r := h.start(t, Deps{Engine: eng})
	code, body := r.get(t, PathReady)
	if code != http.StatusOK || !strings.Contains(body, "inactive") || !strings.Contains(body, "sk_msg programs: not supported") {
		t.Errorf("/readyz = %d %q, want 200, inactive and the reason", code, body)
	}
	if v := metricValue(t, r, MetricNodeActive, ""); v != 0 {
		t.Errorf("%s = %v, want 0", MetricNodeActive, v)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if exists(h.cfg.HostCNIBinDir) || exists(h.cfg.KubeconfigPath) {
		t.Error("something installed on a node that cannot accelerate")
	}
	sameTree(t, "CNI config folder", h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	if opens, _, _ := eng.node.stats(); opens != 0 {
		t.Error("node state opened")
	}
}

// The kubelet rotates the projected token (a ..data symlink swap): the
// kubeconfig is rewritten with the new token, atomically, still 0600.
func TestRunTokenRotation(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	r := h.start(t, Deps{})
	r.waitReady(t)
	token := func() string {
		cfg, err := clientcmd.LoadFromFile(h.cfg.KubeconfigPath)
		if err != nil {
			return err.Error()
		}
		ctx := cfg.Contexts[cfg.CurrentContext]
		if c := cfg.Clusters[ctx.Cluster]; c.Server != h.cfg.APIHost || !strings.HasPrefix(string(c.CertificateAuthorityData), "CA of") {
			return "bad cluster"
		}
		return cfg.AuthInfos[ctx.AuthInfo].Token
	}
	if got := token(); got != "token-1" {
		t.Fatalf("token %q, want token-1", got)
	}
	h.rotateToken(t, "token-2")
	waitFor(t, "the rotated token in the kubeconfig", func() bool { return token() == "token-2" })
	if fileMode(t, h.cfg.KubeconfigPath) != 0o600 {
		t.Errorf("kubeconfig mode %v after rotation", fileMode(t, h.cfg.KubeconfigPath))
	}
}

// A new rules file (a ConfigMap update swaps a symlink) is copied for the
// plugin and applied to the pods running the old defaults; pods with rules
// of their own keep them, and a pod whose state is broken is left alone
// without failing the others. A bad file changes nothing, counts a reload
// error and leaves the node ready.
func TestRunRulesReload(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	own := mustRules(t, rules.DefaultText(nodestate.DefaultSidecarUID)+"chain --port 8080 -j RETURN\n")
	eng.node.setPod("plain", bpf.PodConfig{Rules: rules.Default(), TrustApp: true})
	eng.node.setPod("own", bpf.PodConfig{Rules: own})
	eng.node.setBroken("broken", bpf.PodConfig{Rules: rules.Default()})
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)

	newRules := "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\nchain --port 15090 -j RETURN\n"
	replaceWith(t, h.cfg.RulesFile, newRules)
	waitFor(t, "the new rules applied", func() bool { return eng.node.pod("plain").Rules.Equal(mustRules(t, newRules)) })
	if cfg := eng.node.pod("plain"); !cfg.TrustApp {
		t.Error("rule update lost the pod's other settings")
	}
	if !eng.node.pod("own").Rules.Equal(own) {
		t.Error("a pod with rules of its own was changed")
	}
	if !eng.node.pod("broken").Rules.Equal(rules.Default()) {
		t.Error("a broken pod's rules were changed")
	}
	waitFor(t, "the rules copy", func() bool { return fileio.SameContent(h.cfg.RulesCopyPath, []byte(newRules)) })

	replaceWith(t, h.cfg.RulesFile, "chain --uid-owner 1337 -j MAYBE\n")
	waitFor(t, "a reload error counted", func() bool { return metricValue(t, r, MetricRuleReloadErrors, "") == 1 })
	if !fileio.SameContent(h.cfg.RulesCopyPath, []byte(newRules)) || !eng.node.pod("plain").Rules.Equal(mustRules(t, newRules)) {
		t.Error("a bad rules file changed the rules in force")
	}
	if code, body := r.get(t, PathReady); code != http.StatusOK {
		t.Errorf("not ready after a bad rules file: %s", body)
	}
}

// Uninstall with pods still attached by the plugin keeps the binary (their
// DEL may come through a cached config); --remove-bpf-on-exit removes the
// node state and the installer's own state.
func TestRunUninstall(t *testing.T) {
	for _, tc := range []struct {
		name       string
		records    bool
		removeBPF  bool
		wantBinary bool
	}{
		{"pods left, keep state", true, false, true},
		{"no pods, remove state", false, true, false},
		{"pods left, remove state", true, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHost(t)
			h.cfg.RemoveBPFOnExit = tc.removeBPF
			writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
			if tc.records {
				writeTree(t, h.cfg.StateDir, map[string]string{"pods/uid-1.json": "{}"})
			}
			eng := newFakeEngine(t)
			r := h.start(t, Deps{Engine: eng})
			r.waitReady(t)
			if err := r.stop(t); err != nil {
				t.Fatal(err)
			}
			if got := exists(filepath.Join(h.cfg.HostCNIBinDir, PluginType)); got != tc.wantBinary {
				t.Errorf("binary left: %v, want %v", got, tc.wantBinary)
			}
			_, closes, removes := eng.node.stats()
			if tc.removeBPF != (removes == 1 && !exists(eng.node.dir) && !exists(h.cfg.installerDir())) || closes+removes != 1 {
				t.Errorf("node state: %d closes, %d removes, installer state left %v", closes, removes, exists(h.cfg.installerDir()))
			}
		})
	}
}

// /readyz follows the node state: removed under the installer (by hand, or
// mesh-accelctl), the node is not ready any more.
func TestRunReadinessFollowsState(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	if err := os.RemoveAll(eng.node.dir); err != nil {
		t.Fatal(err)
	}
	if code, body := r.get(t, PathReady); code != http.StatusServiceUnavailable || !strings.Contains(body, "node state is gone") {
		t.Errorf("/readyz = %d %q", code, body)
	}
}

// TestRunCompanions: a running installer copies the plugin's log lines to
// its stdout, posts the spooled Events and records the labelled
// namespaces.
func TestRunCompanions(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	c := fakeAPI(namespace("shop", map[string]string{nsoptin.Label: "true"}))
	var stdout testenv.SyncBuffer
	r := h.start(t, Deps{Kube: c, PluginLogOut: &stdout})
	r.waitReady(t)

	waitFor(t, "the opted-in namespaces", func() bool { return slices.Equal(optedIn(t, h.cfg.StateDir), []string{"shop"}) })
	spool(t, h.cfg.StateDir, eventspool.Record{Namespace: "shop", Name: "web", UID: "u", Reason: "attach", Message: "m"})
	waitFor(t, "the Event", func() bool { return len(podEvents(t, c, "shop")) == 1 && len(spooled(t, h.cfg.StateDir)) == 0 })
	waitFor(t, "the plugin log followed", func() bool {
		appendLog(t, h.cfg.PluginLogFile, "level=INFO msg=\"pod accelerated\"\n")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(stdout.String(), pluginlog.Prefix+"level=INFO msg=\"pod accelerated\"\n")
	})
	// An ADD's line with its time feeds the ADD latency histogram.
	appendLog(t, h.cfg.PluginLogFile, "time=x level=INFO msg=\"pod accelerated\" cmd=ADD pod=shop/web setup=7ms\n")
	waitFor(t, "the ADD time in "+MetricCNIAddDuration, func() bool {
		f := scrape(t, r)[MetricCNIAddDuration]
		if f == nil || len(f.Metric) != 1 {
			return false
		}
		hist := f.Metric[0].GetHistogram()
		return hist.GetSampleCount() == 1 && math.Abs(hist.GetSampleSum()-0.007) < 1e-9
	})
}

// TestRunKillSwitch: a running installer on real node state turns the
// switch off and on again as the mounted ConfigMap key flips.
func TestRunKillSwitch(t *testing.T) {
	h := newBPFHost(t)
	key := filepath.Join(filepath.Dir(h.cfg.RulesFile), KillSwitchKey)
	replaceWith(t, key, "false")
	r := h.start(t, Deps{Engine: BPFEngine{}})
	r.waitReady(t)
	n, err := bpf.OpenNode(h.cfg.bpfOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	switchIs := func(want bool) func() bool {
		return func() bool { on, err := n.Enabled(); return err == nil && on == want }
	}
	waitFor(t, "the switch off at start", switchIs(false))
	replaceWith(t, key, "true")
	waitFor(t, "the switch on", switchIs(true))
	replaceWith(t, key, "false")
	waitFor(t, "the switch off", switchIs(false))
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the switch on without the key", switchIs(true))
}
