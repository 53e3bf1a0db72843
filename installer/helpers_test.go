package installer

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
)

// The helpers shared with the installer's rooms (package installertest).
var (
	readTree    = installertest.ReadTree
	writeTree   = installertest.WriteTree
	sameTree    = installertest.SameTree
	fileMode    = installertest.FileMode
	exists      = installertest.Exists
	waitFor     = installertest.WaitFor
	testLog     = installertest.Log
	replaceWith = installertest.ReplaceWith
	spool       = installertest.Spool
	fakeAPI     = installertest.FakeAPI
	podEvents   = installertest.PodEvents
	spooled     = installertest.Spooled
	namespace   = installertest.Namespace
	optedIn     = installertest.OptedIn
	appendLog   = installertest.AppendLog
)

const bridgeConflist = installertest.BridgeConflist

// host is a temporary node: the host's directories and the installer's
// mounts, as the DaemonSet lays them out.
type host struct {
	root string
	cfg  *Config
}

// newHost makes the directories, a plugin binary, a service account and a
// rules file, and a configuration pointing at them.
func newHost(tb testing.TB) *host {
	tb.Helper()
	root := tb.TempDir()
	h := &host{root: root}
	p := func(rel string) string { return filepath.Join(root, rel) }
	h.cfg = &Config{
		HostCNIBinDir: p("host/opt/cni/bin"), HostCNIConfDir: p("host/etc/cni/net.d"),
		PluginBinary: p("image/mesh-accel"), KubeconfigPath: p("host/etc/mesh-accel/kubeconfig"),
		HostKubeconfigPath: "/etc/mesh-accel/kubeconfig", RulesFile: p("rules/rules"),
		RulesCopyPath: p("host/etc/mesh-accel/rules"), HostRulesFile: "/etc/mesh-accel/rules",
		BPFFS: "/sys/fs/bpf", BPFRoot: "mesh-accel", StateDir: p("host/var/lib/mesh-accel"),
		PluginLogFile: p("host/var/log/mesh-accel/cni.log"), Listen: "127.0.0.1:0",
		SAToken: p("sa/token"), SACA: p("sa/ca.crt"), APIHost: "https://10.96.0.1:443",
	}
	writeTree(tb, root, map[string]string{
		"image/mesh-accel": "#!/bin/false plugin v1\n",
		"rules/rules":      rules.DefaultText(nodestate.DefaultSidecarUID),
	})
	if err := os.MkdirAll(h.cfg.HostCNIConfDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	h.rotateToken(tb, "token-1")
	return h
}

// newBPFHost is a host whose installer runs on real node state, under a
// bpffs root of its own (removed at cleanup), with a primary CNI config in
// place. It needs root and the kernel's BPF features (testenv's policy).
func newBPFHost(tb testing.TB) *host {
	tb.Helper()
	testenv.RequireRoot(tb)
	if err := bpf.CheckKernel(); err != nil {
		testenv.Missing(tb, "%v", err)
	}
	h := newHost(tb)
	h.cfg.BPFRoot = bpftest.UniqueRoot()
	tb.Cleanup(func() { _ = os.RemoveAll(filepath.Join(h.cfg.BPFFS, h.cfg.BPFRoot)) })
	writeTree(tb, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	return h
}

// rotateToken swaps the service account files the way the kubelet updates
// a projected volume: a new timestamped folder, then the ..data symlink
// renamed over, with token and ca.crt as symlinks through ..data.
func (h *host) rotateToken(tb testing.TB, token string) {
	tb.Helper()
	dir := filepath.Dir(h.cfg.SAToken)
	stamp := "..tmp-" + token
	writeTree(tb, dir, map[string]string{stamp + "/token": token, stamp + "/ca.crt": "CA of " + dir})
	if err := os.Symlink(stamp, filepath.Join(dir, "..data_tmp")); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		tb.Fatal(err)
	}
	for _, f := range []string{"token", "ca.crt"} {
		if !exists(filepath.Join(dir, f)) {
			if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// run is an installer running in the background.
type run struct {
	url    string
	cancel context.CancelFunc
	done   chan error
}

// start runs the installer with deps (a fake engine unless set) and stops
// it at the test's end.
func (h *host) start(tb testing.TB, d Deps) *run {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	d.Listener = ln
	if d.Engine == nil {
		d.Engine = newFakeEngine(tb)
	}
	if d.Log == nil {
		d.Log = testLog(tb)
	}
	if d.PluginVersions == nil {
		d.PluginVersions = func(string) ([]string, error) { return nil, nil }
	}
	if d.Debounce == 0 {
		d.Debounce = 10 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- Run(ctx, h.cfg, d) }()
	tb.Cleanup(func() { _ = r.stop(tb) })
	return r
}

// stop cancels the installer (its SIGTERM) and returns Run's error.
func (r *run) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(time.Minute):
		tb.Fatal("installer did not stop")
		return nil
	}
}

// get returns the status and body of a GET of path.
func (r *run) get(tb testing.TB, path string) (int, string) {
	tb.Helper()
	resp, err := http.Get(r.url + path)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *run) waitReady(tb testing.TB) {
	tb.Helper()
	waitFor(tb, "/readyz 200", func() bool { c, _ := r.get(tb, PathReady); return c == http.StatusOK })
}

// fakeEngine is an in-memory engine.
type fakeEngine struct {
	kernelErr, openErr error
	node               *fakeNode
}

func newFakeEngine(tb testing.TB) *fakeEngine {
	dir := filepath.Join(tb.TempDir(), "bpf", "v1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	return &fakeEngine{node: &fakeNode{dir: dir, pods: map[string]bpf.PodConfig{}, counters: bpf.Counters{}}}
}

func (e *fakeEngine) CheckKernel() error { return e.kernelErr }

func (e *fakeEngine) StateExists(bpf.Options) bool { return exists(e.node.dir) }

func (e *fakeEngine) OpenNode(bpf.Options) (Node, error) {
	if e.openErr != nil {
		return nil, e.openErr
	}
	e.node.mu.Lock()
	defer e.node.mu.Unlock()
	e.node.opens++
	return e.node, nil
}

// fakeNode is node state in memory; Dir is a real folder, as readiness
// checks it.
type fakeNode struct {
	mu                     sync.Mutex
	dir                    string
	pods                   map[string]bpf.PodConfig
	broken                 map[string]bool // pods listed with Broken set
	counters               bpf.Counters
	opens, closes, removes int
	updates                []string
	sweeps, upgrades       int
	skew                   string // DataPaths' pinned data path, when not the binary's
	older                  []bpf.Retiring
}

// Upgrade implements Node: it counts the passes.
func (n *fakeNode) Upgrade() (bpf.UpgradeReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.upgrades++
	return bpf.UpgradeReport{}, nil
}

// DataPaths implements Node: the pinned data path is this installer's
// unless skew names another.
func (n *fakeNode) DataPaths() (bpf.DataPaths, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	pinned := bpf.DataPath()
	if n.skew != "" {
		pinned = n.skew
	}
	return bpf.DataPaths{Pinned: pinned, Binary: bpf.DataPath(), Older: n.older}, nil
}

// SweepStep implements Node: each pass removes one entry.
func (n *fakeNode) SweepStep() (bpf.Swept, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sweeps++
	return bpf.Swept{Directions: 1}, nil
}

func (n *fakeNode) Dir() string { return n.dir }

func (n *fakeNode) Pods() ([]bpf.PodInfo, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []bpf.PodInfo
	for id, cfg := range n.pods {
		p := bpf.PodInfo{ID: id, Config: cfg}
		if n.broken[id] {
			p.Broken = fmt.Errorf("%w: pod %s lacks its sockops link", bpf.ErrPodBroken, id)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (n *fakeNode) UpdatePod(id string, cfg bpf.PodConfig) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.pods[id]; !ok {
		return bpf.ErrPodNotAttached
	}
	n.pods[id] = cfg
	n.updates = append(n.updates, id)
	return nil
}

func (n *fakeNode) Counters() (bpf.Counters, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := bpf.Counters{}
	for k, v := range n.counters {
		out[k] = v
	}
	return out, nil
}

func (n *fakeNode) Remove() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.removes++
	return os.RemoveAll(n.dir)
}

func (n *fakeNode) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closes++
	return nil
}

func (n *fakeNode) pod(id string) bpf.PodConfig {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pods[id]
}

func (n *fakeNode) setPod(id string, cfg bpf.PodConfig) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pods[id] = cfg
}

// setBroken lists the pod with its state broken (bpf.PodInfo.Broken).
func (n *fakeNode) setBroken(id string, cfg bpf.PodConfig) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pods[id] = cfg
	if n.broken == nil {
		n.broken = map[string]bool{}
	}
	n.broken[id] = true
}

func (n *fakeNode) stats() (opens, closes, removes int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opens, n.closes, n.removes
}

func mustRules(tb testing.TB, text string) *rules.Set {
	tb.Helper()
	s, err := rules.ParseString("test", text)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
