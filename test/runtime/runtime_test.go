package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// testNode is a temporary node for one container: the host's CNI folders
// (test folders, the chart's cni.binDir and cni.confDir) whose primary
// config is a bridge + host-local conflist, the installer's other host
// folders (test folders too), a unique bpffs root on the host's bpffs, and
// this machine's address and a free port for the installer's endpoints.
type testNode struct {
	t                  *testing.T
	img                *image
	tmp                string
	binDir, confDir    string
	etcDir, volumesDir string
	conflist, original string
	bpfRoot            string
	params             cnichain.Params
	hostIP             string
	port               int
	sim                *sim.Node
	chain              *cnichain.Chain
}

func newTestNode(t *testing.T) *testNode {
	t.Helper()
	requireRuntime(t)
	n := &testNode{t: t, img: builtImage(t), tmp: t.TempDir(), bpfRoot: bpfRoot(), hostIP: nodeIP()}
	n.port = freePort(t, n.hostIP)
	n.binDir, n.confDir = filepath.Join(n.tmp, "opt/cni/bin"), filepath.Join(n.tmp, "etc/cni/net.d")
	n.etcDir, n.volumesDir = filepath.Join(n.tmp, "etc/mesh-accel"), filepath.Join(n.tmp, "volumes")
	t.Cleanup(func() { n.removeNodeState() })
	var err error
	if n.params, err = cnichain.DefaultParams(n.tmp, filepath.Join(nodestate.DefaultBPFFS, n.bpfRoot)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"loopback", "bridge", "host-local"} {
		copyFile(t, filepath.Join(n.img.plugins, p), filepath.Join(n.binDir, p), 0o755)
	}
	n.original = fmt.Sprintf(`{
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
`, n.params.Name, n.params.Bridge, n.params.IPAMDir, n.params.Subnet)
	n.conflist = filepath.Join(n.confDir, "10-bridge.conflist")
	writeFile(t, n.conflist, n.original, 0o644)
	writeFile(t, filepath.Join(n.volumesDir, serviceAccountVolume, "token"), "runtime-test-token", 0o644)
	writeFile(t, filepath.Join(n.volumesDir, serviceAccountVolume, "ca.crt"), "runtime-test-ca", 0o644)
	writeFile(t, filepath.Join(n.volumesDir, serviceAccountVolume, "namespace"), releaseNamespace, 0o644)
	return n
}

// values are the chart values of this node: its CNI folders, the
// endpoints' port (on the node's own address, the chart's default),
// the removal of the BPF state on exit, the seccomp profile type, and the
// test's locations of what lives at a fixed host path (extraEnv: the bpffs
// root, the state and log folders, the plugin's kubeconfig and rules).
func (n *testNode) values(seccomp corev1.SeccompProfileType, removeBPF bool) map[string]any {
	env := func(name, value string) map[string]any { return map[string]any{"name": name, "value": value} }
	return map[string]any{
		"cni":             map[string]any{"binDir": n.binDir, "confDir": n.confDir},
		"metrics":         map[string]any{"port": n.port},
		"seccompProfile":  string(seccomp),
		"removeBPFOnExit": removeBPF,
		"extraEnv": []any{
			env(installer.EnvName(installer.FlagBPFRoot), n.bpfRoot),
			env(installer.EnvName(installer.FlagStateDir), n.params.StateDir),
			env(installer.EnvName(installer.FlagPluginLogFile), n.params.LogFile),
			env(installer.EnvName(installer.FlagHostKubeconfigPath), filepath.Join(n.etcDir, "kubeconfig")),
			env(installer.EnvName(installer.FlagHostRulesFile), filepath.Join(n.etcDir, "rules")),
		},
	}
}

// kubeletNode is what the test's kubelet knows of this node.
func (n *testNode) kubeletNode() node {
	return node{
		hostIP: n.hostIP,
		hostPaths: map[string]string{
			"/etc/mesh-accel":     n.etcDir,
			"/var/lib/mesh-accel": n.params.StateDir,
			"/var/log/mesh-accel": filepath.Dir(n.params.LogFile),
		},
		volumeDirs: map[string]string{
			"rules":              filepath.Join(n.volumesDir, "rules"),
			serviceAccountVolume: filepath.Join(n.volumesDir, serviceAccountVolume),
		},
		// The API server the kubeconfig names; nothing listens there.
		serviceEnv: map[string]string{"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "1"},
	}
}

// running is the installer container of a node.
type running struct {
	*container
	pod          renderedPod
	rootfs       string // the container's root file system (the image's)
	spec         string // the spec's summary, for messages
	readyURL     string // the readiness probe's
	hostIP, port string // the installer's listen address
	metrics      string // /metrics there
}

// start renders the chart with values, and runs its installer container
// under runc with RuntimeDefault made by source. edit, when not nil,
// changes the rendered pod first.
func (n *testNode) start(values map[string]any, source seccompSource, edit func(*renderedPod)) *running {
	t := n.t
	t.Helper()
	pod := renderChart(t, values)
	if edit != nil {
		edit(&pod)
	}
	cri := kubelet(t, pod, n.kubeletNode())
	id := "mesh-accel-runtime-" + cnichain.RandHex(4)
	rootfs := n.img.rootfs(t)
	spec := ociSpec(t, cri, id, rootfs, "/"+id, source)
	r := &running{pod: pod, rootfs: rootfs, container: runContainer(t, id, spec),
		readyURL: probeURL(pod.installer.ReadinessProbe, n.hostIP), hostIP: n.hostIP, port: strconv.Itoa(n.port)}
	r.metrics = fmt.Sprintf("http://%s%s", net.JoinHostPort(r.hostIP, r.port), installer.PathMetrics)
	seccomp := "none"
	if spec.Linux.Seccomp != nil {
		seccomp = source.name
	}
	r.spec = fmt.Sprintf("capabilities %v, no_new_privs %v, read-only root %v, seccomp %s",
		spec.Process.Capabilities.Bounding, spec.Process.NoNewPrivileges, spec.Root.Readonly, seccomp)
	t.Logf("runc runs %s: %s", id, r.spec)
	return r
}

// metric scrapes /metrics for an unlabelled metric's value.
func (r *running) metric(name string) float64 {
	r.t.Helper()
	code, body := get(r.metrics)
	if code != http.StatusOK {
		r.t.Fatalf("/metrics: %d %s", code, body)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				r.t.Fatal(err)
			}
			return f
		}
	}
	r.t.Fatalf("no %s in /metrics", name)
	return 0
}

// wantApplied checks that runc applied the rendered pod to the
// installer's process: uid and gid 0, exactly the three capabilities
// (effective, permitted, bounding; none inheritable or ambient),
// no_new_privs, the seccomp mode, a read-only root, the read-only cgroup
// hierarchy, the memory limit, the endpoints on the node's address only
// (no loopback), and a liveness probe that passes.
func (r *running) wantApplied(wantSeccomp bool) {
	t := r.t
	t.Helper()
	pid := r.pid()
	st := procStatus(t, pid)
	caps := fmt.Sprintf("%016x", uint64(1)<<unix.CAP_BPF|1<<unix.CAP_NET_ADMIN|1<<unix.CAP_PERFMON)
	for k, want := range map[string]string{"CapEff": caps, "CapPrm": caps, "CapBnd": caps, "CapInh": "0000000000000000",
		"CapAmb": "0000000000000000", "NoNewPrivs": "1", "Uid": "0\t0\t0\t0", "Gid": "0\t0\t0\t0"} {
		if st[k] != want {
			t.Errorf("installer's %s = %s, want %s", k, st[k], want)
		}
	}
	if mode := st["Seccomp"]; (mode == "2") != wantSeccomp {
		t.Errorf("installer's seccomp mode %s, want a filter: %v", mode, wantSeccomp)
	}
	if opts := mountOptions(t, pid, "/"); !strings.HasPrefix(opts, "ro,") && opts != "ro" {
		t.Errorf("root file system mounted %q, want read-only", opts)
	}
	if opts := mountOptions(t, pid, "/host/sys/fs/cgroup"); !strings.HasPrefix(opts, "ro,") {
		t.Errorf("the host's cgroup hierarchy mounted %q, want read-only", opts)
	}
	if lim, want := memoryLimit(t, pid), r.pod.installer.Resources.Limits.Memory().Value(); lim != want {
		t.Errorf("the container's memory limit is %d bytes, want the chart's %d", lim, want)
	}
	if code, body := get(probeURL(r.pod.installer.LivenessProbe, r.hostIP)); code != http.StatusOK {
		t.Errorf("liveness probe: %d %s", code, body)
	}
	if r.hostIP != "127.0.0.1" {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", r.port), time.Second); err == nil {
			c.Close()
			t.Errorf("the endpoints answer on loopback too, want the node's address %s only", r.hostIP)
		}
	}
}

// stop stops the installer as the kubelet does and checks that it exited
// cleanly within the pod's terminationGracePeriodSeconds (after which the
// kubelet would kill it).
func (r *running) stop() {
	r.t.Helper()
	code := r.container.stop()
	if code != 0 {
		r.t.Fatalf("installer exited with %d:\n%s", code, r.out.String())
	}
	if grace := r.pod.spec.TerminationGracePeriodSeconds; grace != nil && r.stopTook > time.Duration(*grace)*time.Second {
		r.t.Errorf("the installer took %v to exit on SIGTERM, more than the pod's grace period of %ds", r.stopTook, *grace)
	}
}

// runtimeList loads the primary config the way containerd does: the first
// config file by name.
func (n *testNode) runtimeList() *libcni.NetworkConfigList {
	n.t.Helper()
	files, err := libcni.ConfFiles(n.confDir, []string{".conf", ".conflist", ".json"})
	if err != nil || len(files) == 0 {
		n.t.Fatalf("CNI configs: %v, %v", files, err)
	}
	sort.Strings(files)
	l, err := libcni.ConfListFromFile(files[0])
	if err != nil {
		n.t.Fatal(err)
	}
	return l
}

// wantInstalled checks what the installer put on the node through its
// mounts: its entry last in the runtime's view of the primary config,
// naming the node's folders; the image's plugin binary; the kubeconfig
// (0600) and the rules of the ConfigMap.
func (n *testNode) wantInstalled(r *running) {
	t := n.t
	t.Helper()
	l := n.runtimeList()
	last := l.Plugins[len(l.Plugins)-1]
	if len(l.Plugins) != 2 || last.Network.Type != installer.PluginType {
		t.Fatalf("runtime's conflist: %d plugins, last %q", len(l.Plugins), last.Network.Type)
	}
	var entry plugin.Config
	if err := json.Unmarshal(last.Bytes, &entry); err != nil {
		t.Fatal(err)
	}
	if entry.BPFRoot != filepath.Join(nodestate.DefaultBPFFS, n.bpfRoot) || entry.StateDir != n.params.StateDir ||
		entry.LogFile != n.params.LogFile || entry.RulesFile != filepath.Join(n.etcDir, "rules") {
		t.Errorf("entry %s: not this node's folders", last.Bytes)
	}
	inImage := readFile(t, filepath.Join(r.rootfs, installer.DefaultPluginBinary))
	if st, err := os.Stat(filepath.Join(n.binDir, installer.PluginType)); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("plugin binary: %v, %v", st, err)
	} else if readFile(t, filepath.Join(n.binDir, installer.PluginType)) != inImage {
		t.Error("the installed plugin binary is not the image's")
	}
	if st, err := os.Stat(filepath.Join(n.etcDir, "kubeconfig")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("kubeconfig: %v, %v", st, err)
	}
	if got := readFile(t, filepath.Join(n.etcDir, "rules")); got != r.pod.configMap.Data["rules"] {
		t.Errorf("rules copy %q, want the ConfigMap's %q", got, r.pod.configMap.Data["rules"])
	}
}

// wantUninstalled checks that the conflist has its original bytes and the
// kubeconfig and rules copy are gone.
func (n *testNode) wantUninstalled() {
	t := n.t
	t.Helper()
	if got := readFile(t, n.conflist); got != n.original {
		t.Errorf("conflist after SIGTERM:\n%s\nwant the original:\n%s", got, n.original)
	}
	if ents, _ := os.ReadDir(n.confDir); len(ents) != 1 {
		t.Errorf("CNI config folder holds %d entries", len(ents))
	}
	for _, p := range []string{filepath.Join(n.etcDir, "kubeconfig"), filepath.Join(n.etcDir, "rules")} {
		if exists(p) {
			t.Errorf("%s left after SIGTERM", p)
		}
	}
}

// addPod creates a pod with an Envoy sidecar, annotated for acceleration
// (its app declared a recvmsg reader), whose network comes from what the
// CNI config folder holds now, through libcni.
func (n *testNode) addPod(name string, app bool) *cnichain.Pod {
	t := n.t
	t.Helper()
	if n.sim == nil {
		if _, err := sim.EnvoyPath(); err != nil {
			testenv.Missing(t, "%v", err)
		}
		n.sim = sim.NewTestNode(t, sim.NodeOptions{Prefix: "mr"})
		var err error
		if n.chain, err = cnichain.New(n.binDir, n.tmp, n.params); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.chain.Close() }) // after the pods' DELs
	}
	n.chain.List = n.runtimeList()
	p, err := n.chain.AddPod(n.sim, sim.PodOptions{Name: name, Sidecar: true, NoApp: !app}, "",
		map[string]string{plugin.AnnotationEnabled: "true", plugin.AnnotationTrustApp: "true"},
		func(p *cnichain.Pod) { t.Cleanup(func() { _ = n.chain.DelPod(p) }) }) // before the node goes
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// record reports whether the plugin recorded the pod as attached.
func (n *testNode) record(p *cnichain.Pod) bool {
	return exists(filepath.Join(n.params.StateDir, "pods", p.UID+".json"))
}

// counters reads the engine's counters from the node state.
func (n *testNode) counters() bpf.Counters {
	n.t.Helper()
	node, err := bpf.OpenNode(bpf.Options{Root: n.bpfRoot})
	if err != nil {
		n.t.Fatal(err)
	}
	defer node.Close()
	c, err := node.Counters()
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// bpfLeft lists what is left under the node's bpffs root.
func (n *testNode) bpfLeft() []string {
	var left []string
	_ = filepath.Walk(filepath.Join(nodestate.DefaultBPFFS, n.bpfRoot), func(p string, _ os.FileInfo, err error) error {
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			left = append(left, strings.TrimPrefix(p, nodestate.DefaultBPFFS+"/"))
		}
		return nil
	})
	return left
}

// bpfRootPrefix starts the bpffs root of a node of this package: the
// tests' prefix (bpftest.UniqueRoot), "rt" and the test process's pid,
// so that the next run removes what a run killed outright left.
const bpfRootPrefix = "mesh-accel-test-rt"

// bpfRoot is a unique bpffs root for a node of this run.
func bpfRoot() string {
	return fmt.Sprintf("%s%d-%s", bpfRootPrefix, os.Getpid(), strings.TrimPrefix(bpftest.UniqueRoot(), "mesh-accel-test-"))
}

// sweepStaleNodeState removes the node state of runs killed outright.
func sweepStaleNodeState() {
	dirs, _ := filepath.Glob(filepath.Join(nodestate.DefaultBPFFS, bpfRootPrefix+"*"))
	for _, d := range dirs {
		if pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(d), bpfRootPrefix), "-"); !alive(pid) {
			removeNodeState(filepath.Base(d))
		}
	}
}

// removeNodeState removes whatever node state a failed test left.
func (n *testNode) removeNodeState() {
	if len(n.bpfLeft()) > 0 {
		removeNodeState(n.bpfRoot)
	}
}

func removeNodeState(root string) {
	if node, err := bpf.OpenNode(bpf.Options{Root: root}); err == nil {
		_ = node.Remove()
	}
	_ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, root))
}

// Under seccompProfile RuntimeDefault as today's containerd makes it (its
// profile allows bpf() to CAP_BPF), the chart's installer container, run
// by runc with the chart's capabilities, read-only root, no_new_privs,
// mounts and environment, becomes ready and active, installs the image's
// plugin and its entry through its mounts, serves the ops CLI through
// exec, and two pods attached through the resulting CNI chain are
// accelerated; on SIGTERM (removeBPFOnExit) it gives the conflist back
// byte for byte and leaves nothing under bpffs.
func TestRuntimeDefaultSeccomp(t *testing.T) {
	n := newTestNode(t)
	r := n.start(n.values(corev1.SeccompProfileTypeRuntimeDefault, true), currentContainerd, nil)
	if body := r.waitProbe(r.readyURL); body != "ok\n" {
		t.Fatalf("/readyz: %q, want ok (active)", body)
	}
	r.wantApplied(true)
	if v := r.metric(installer.MetricNodeActive); v != 1 {
		t.Fatalf("%s = %v under %s:\n%s", installer.MetricNodeActive, v, r.spec, r.out.String())
	}
	n.wantInstalled(r)
	// The ops CLI through exec (kubectl exec): the same privileges.
	for _, args := range [][]string{{"/mesh-accelctl", "health"}, {"/mesh-accelctl", "status"}} {
		out, err := r.exec(args...)
		if err != nil {
			t.Errorf("exec %s in the container: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("exec %s:\n%s", strings.Join(args, " "), out)
	}

	list := n.runtimeList()
	a, b := n.addPod("a", false), n.addPod("b", true)
	if !n.record(a) || !n.record(b) || r.metric(installer.MetricPodsAttached) != 2 {
		t.Fatalf("pods not attached: records %v %v", n.record(a), n.record(b))
	}
	before := n.counters()
	res := a.RunTestClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})
	if !res.OK {
		t.Fatalf("client a->b: %v", res.Errors)
	}
	got := n.counters().Sub(before)
	if got["connections_accepted"] == 0 || got["bytes_redirected"] == 0 {
		t.Fatalf("pods not accelerated: %v", got)
	}
	t.Logf("1 MiB from pod a to pod b's app through both sidecars: %d connections accepted, %d bytes redirected",
		got["connections_accepted"], got["bytes_redirected"])
	if r.metric(installer.MetricRedirectedBytes) == 0 {
		t.Error("/metrics shows no redirected bytes")
	}
	for _, p := range []*cnichain.Pod{a, b} {
		n.chain.List = list
		if err := n.chain.Del(p); err != nil {
			t.Fatalf("DEL %s: %v", p.Name, err)
		}
	}

	r.stop()
	n.wantUninstalled()
	if exists(filepath.Join(n.binDir, installer.PluginType)) {
		t.Error("plugin binary left although no pod was attached")
	}
	if left := n.bpfLeft(); len(left) != 0 {
		t.Errorf("left under bpffs: %v", left)
	}
}

// Under RuntimeDefault as containerd v1.6.8 made it (bpf() only with
// CAP_SYS_ADMIN), the installer holds its three capabilities and is
// refused bpf() all the same: it reports ready but inactive, and its
// readiness and its log name the seccomp profile and the chart value that
// fixes it, not missing capabilities. It installs nothing, and leaves on
// SIGTERM.
func TestOlderRuntimeDefaultSeccomp(t *testing.T) {
	n := newTestNode(t)
	r := n.start(n.values(corev1.SeccompProfileTypeRuntimeDefault, false), olderContainerd, nil)
	body := r.waitProbe(r.readyURL)
	r.wantApplied(true)
	if v := r.metric(installer.MetricNodeActive); v != 0 {
		t.Errorf("%s = %v, want 0 (inactive)", installer.MetricNodeActive, v)
	}
	t.Logf("/readyz under %s: %s", olderContainerd.name, body)
	logs := r.out.String()
	for what, text := range map[string]string{"/readyz": body, "log": logs} {
		for _, want := range []string{"seccomp profile refuses bpf()", "seccompProfile", "Unconfined"} {
			if !strings.Contains(text, want) {
				t.Errorf("%s does not say %q:\n%s", what, want, text)
			}
		}
		if strings.Contains(text, "needs CAP_BPF") || strings.Contains(text, "lacks CAP_") {
			t.Errorf("%s blames capabilities:\n%s", what, text)
		}
	}
	if !strings.HasPrefix(body, "ok, inactive: ") {
		t.Errorf("/readyz %q, want ready and inactive", body)
	}
	if got := readFile(t, n.conflist); got != n.original || exists(filepath.Join(n.binDir, installer.PluginType)) {
		t.Errorf("an inactive installer changed the node: conflist\n%s", got)
	}
	r.stop()
	n.wantUninstalled()
}

// The fix the message names: seccompProfile Unconfined on the same
// runtime makes the node active.
func TestSeccompUnconfined(t *testing.T) {
	n := newTestNode(t)
	r := n.start(n.values(corev1.SeccompProfileTypeUnconfined, true), olderContainerd, nil)
	if body := r.waitProbe(r.readyURL); body != "ok\n" {
		t.Fatalf("/readyz: %q, want ok (active)", body)
	}
	r.wantApplied(false)
	n.wantInstalled(r)
	r.stop()
	n.wantUninstalled()
	if left := n.bpfLeft(); len(left) != 0 {
		t.Errorf("left under bpffs: %v", left)
	}
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	writeFile(t, to, readFile(t, from), mode)
}

// The DaemonSet's claim that each of its three capabilities is needed:
// without any one of them (seccomp unconfined, so that only capabilities
// decide), the node state cannot be created; the installer reports ready
// but inactive, names the capability it lacks, installs nothing, and
// leaves on SIGTERM.
func TestEachCapabilityNeeded(t *testing.T) {
	for _, drop := range []string{"BPF", "NET_ADMIN", "PERFMON"} {
		t.Run(drop, func(t *testing.T) {
			n := newTestNode(t)
			r := n.start(n.values(corev1.SeccompProfileTypeUnconfined, true), olderContainerd, func(p *renderedPod) {
				caps := p.installer.SecurityContext.Capabilities
				caps.Add = slices.DeleteFunc(slices.Clone(caps.Add), func(c corev1.Capability) bool { return string(c) == drop })
			})
			body := r.waitProbe(r.readyURL)
			if !strings.HasPrefix(body, "ok, inactive: ") || !strings.Contains(body, "lacks CAP_"+drop) ||
				strings.Contains(body, "seccomp") {
				t.Errorf("/readyz without %s: %q, want inactive, lacking CAP_%s", drop, body, drop)
			}
			if v := r.metric(installer.MetricNodeActive); v != 0 {
				t.Errorf("%s = %v, want 0", installer.MetricNodeActive, v)
			}
			if got := readFile(t, n.conflist); got != n.original || exists(filepath.Join(n.binDir, installer.PluginType)) {
				t.Errorf("an inactive installer changed the node: conflist\n%s", got)
			}
			r.stop()
			if left := n.bpfLeft(); len(left) != 0 {
				t.Errorf("left under bpffs: %v", left)
			}
		})
	}
}
