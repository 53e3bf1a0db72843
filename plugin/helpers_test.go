package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// fakeEngine keeps pods in memory.
type fakeEngine struct {
	mu        sync.Mutex
	exists    bool // node state exists
	pods      map[string]fakePod
	openErr   error
	kernelErr error
	attachErr error
	opens     int
	// delay makes attach and detach take time (outside the lock), as the
	// real ones do, so that races between commands show.
	delay time.Duration
}

type fakePod struct {
	cgroup string
	cfg    bpf.PodConfig
	broken error // listed as bpf.PodInfo.Broken
}

func newFakeEngine() *fakeEngine { return &fakeEngine{pods: map[string]fakePod{}} }

func (e *fakeEngine) nodeExists() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exists
}

func (e *fakeEngine) podExists(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.pods[id]
	return ok
}

func (e *fakeEngine) open() (node, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opens++
	if e.openErr != nil {
		return nil, e.openErr
	}
	e.exists = true
	return fakeNode{e}, nil
}

func (e *fakeEngine) checkKernel() error { return e.kernelErr }
func (e *fakeEngine) dir() string        { return "/fake/bpffs/mesh-accel/v1" }

func (e *fakeEngine) pod(id string) (fakePod, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pods[id]
	return p, ok
}

type fakeNode struct{ e *fakeEngine }

func (n fakeNode) AttachPod(id, dir string, cfg bpf.PodConfig) error {
	time.Sleep(n.e.delay)
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	if n.e.attachErr != nil {
		return n.e.attachErr
	}
	if p, ok := n.e.pods[id]; ok && p.cgroup != dir {
		return fmt.Errorf("pod %s is attached to another cgroup", id)
	}
	n.e.pods[id] = fakePod{cgroup: dir, cfg: cfg}
	return nil
}

func (n fakeNode) DetachPod(id string) error {
	time.Sleep(n.e.delay)
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	delete(n.e.pods, id)
	return nil
}

func (n fakeNode) Pods() ([]bpf.PodInfo, error) {
	n.e.mu.Lock()
	defer n.e.mu.Unlock()
	var out []bpf.PodInfo
	for id, p := range n.e.pods {
		st, err := os.Stat(p.cgroup)
		if err != nil {
			return nil, err
		}
		out = append(out, bpf.PodInfo{ID: id, CgroupID: inode(st), Config: p.cfg, Broken: p.broken})
	}
	return out, nil
}

func (n fakeNode) Close() error { return nil }

// fakeCgroups maps pod uids to directories under a temporary root.
type fakeCgroups struct {
	root string
	err  error
}

func (c fakeCgroups) resolve(cgroupPath, uid string) (string, error) {
	if c.err != nil {
		return "", c.err
	}
	if cgroupPath != "" {
		return cgroupPath, nil
	}
	return filepath.Join(c.root, "pod"+uid), nil
}

// fakePods answers API lookups from a map.
type fakePods struct {
	mu    sync.Mutex
	pods  map[string]*podMeta // "ns/name"
	err   error
	calls int
}

func (f *fakePods) pod(_ context.Context, ns, name string) (*podMeta, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	if m, ok := f.pods[ns+"/"+name]; ok {
		return m, nil
	}
	return nil, failf(ReasonAPI, "pod %s/%s not found", ns, name)
}

// env runs the plugin's commands against fakes.
type env struct {
	t        *testing.T
	eng      *fakeEngine
	engine   engine // eng, or a real one
	cgroups  fakeCgroups
	api      *fakePods
	stateDir string
	conf     map[string]any // the plugin's config, before runtimeConfig
	stdout   bytes.Buffer
	logs     bytes.Buffer
}

const prevResult100 = `{"cniVersion":"1.0.0",
 "interfaces":[{"name":"eth0","mac":"0a:58:0a:01:02:03","sandbox":"/run/netns/x"}],
 "ips":[{"address":"10.1.2.3/24","gateway":"10.1.2.1","interface":0}]}`

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{
		t: t, eng: newFakeEngine(), cgroups: fakeCgroups{root: t.TempDir()},
		api: &fakePods{pods: map[string]*podMeta{}}, stateDir: t.TempDir(),
	}
	e.engine = e.eng
	e.conf = map[string]any{
		"cniVersion": "1.1.0", "name": "net", "type": TypeName,
		"stateDir": e.stateDir, "logFile": "-", "logLevel": "debug",
		"prevResult": json.RawMessage(prevResult100),
	}
	return e
}

// pod is one pod's CNI arguments and annotations.
type pod struct {
	ns, name, uid, container string
	ann                      map[string]string // nil: the runtime passes none
	cgroupPath               string
}

func enabledPod(name string) pod {
	return pod{ns: "default", name: name, uid: "uid-" + name, container: "c-" + name,
		ann: map[string]string{AnnotationEnabled: "true"}}
}

// mkCgroup creates the pod's fake cgroup directory.
func (e *env) mkCgroup(p pod) string {
	e.t.Helper()
	dir, _ := e.cgroups.resolve(p.cgroupPath, p.uid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

func (e *env) args(p pod, extra map[string]any) *skel.CmdArgs {
	e.t.Helper()
	conf := maps.Clone(e.conf)
	maps.Copy(conf, extra)
	rc := map[string]any{}
	if p.ann != nil {
		rc[CapPodAnnotations] = p.ann
	}
	if p.cgroupPath != "" {
		rc[CapCgroupPath] = p.cgroupPath
	}
	conf["runtimeConfig"] = rc
	b := mustJSON(e.t, conf)
	a := fmt.Sprintf("IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_UID=%s;K8S_POD_INFRA_CONTAINER_ID=%s",
		p.ns, p.name, p.uid, p.container)
	return &skel.CmdArgs{ContainerID: p.container, Netns: "/run/netns/x", IfName: "eth0", Args: a, StdinData: b}
}

// call runs one command as run() does, with the fakes.
func (e *env) call(cmd string, do func(*skel.CmdArgs, *Config, *deps) error, args *skel.CmdArgs) error {
	e.t.Helper()
	conf, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := &deps{
		engine:  e.engine,
		cgroups: func() (cgroupResolver, error) { return e.cgroups, nil },
		pods:    e.api,
		stdout:  &e.stdout,
		log:     labelled(log, cmd, args),
	}
	return do(args, conf, d)
}

func (e *env) add(p pod, extra map[string]any) error {
	e.t.Helper()
	return e.call("ADD", doAdd, e.args(p, extra))
}

func (e *env) del(p pod, extra map[string]any) error {
	e.t.Helper()
	return e.call("DEL", doDel, e.args(p, extra))
}

// mustAdd runs ADD and checks that it printed the previous result.
func (e *env) mustAdd(p pod, extra map[string]any) {
	e.t.Helper()
	e.stdout.Reset()
	if err := e.add(p, extra); err != nil {
		e.t.Fatalf("ADD %s: %v\nlogs:\n%s", p.name, err, e.logs.String())
	}
	var res map[string]any
	if err := json.Unmarshal(e.stdout.Bytes(), &res); err != nil || res["ips"] == nil {
		e.t.Fatalf("ADD %s printed %q, not the previous result (%v)", p.name, e.stdout.String(), err)
	}
}

// failures reads the failure counters.
func (e *env) failures() Failures {
	e.t.Helper()
	f, err := ReadFailures(e.stateDir)
	if err != nil {
		e.t.Fatal(err)
	}
	return f
}

// errCode is the CNI error code of err, 0 for none.
func errCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func inode(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }

func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}
