// Package ctltest drives mesh-accelctl's commands, through the cobra root
// with arguments and captured output, against real node state on the node
// simulator (root; skipped locally without it, failed under CI).
package ctltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func TestMain(m *testing.M) {
	sim.RoleMain()
	os.Exit(m.Run())
}

// Namespace of the test pods' records.
const ns = "shop"

// Pod configurations used across the tests. WithOneWay, a benchmark knob,
// exists in builds with -tags meshbench only (make test passes it).
var (
	oneWayCfg  = bpf.PodConfig{Rules: rules.Default()}.WithOneWay() // towards the sidecars
	trustedAll = bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}
)

// env is a simulated node with its own mesh-accel state and pod records.
type env struct {
	t        *testing.T
	node     *bpf.Node
	sim      *sim.Node
	stateDir string   // the plugin's state folder, with the pod records
	global   []string // the global flags that point mesh-accelctl at this state
	uids     map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, sim: sim.NewTestNode(t, sim.NodeOptions{}), stateDir: t.TempDir(), uids: map[string]string{}}
	e.node = bpftest.NewNode(t, bpf.Options{})
	dir := e.node.Dir() // <bpffs>/<root>/<layout>
	root := filepath.Dir(dir)
	e.global = []string{"--" + ctl.FlagBPFFS, filepath.Dir(root), "--" + ctl.FlagBPFRoot, filepath.Base(root),
		"--" + ctl.FlagStateDir, e.stateDir}
	return e
}

// pod adds a pod with a sidecar, attached under a fresh UID before its
// processes start (as the CNI plugin does), and records it as shop/<name>.
func (e *env) pod(name string, cfg bpf.PodConfig) *sim.Pod {
	e.t.Helper()
	uid := newUID()
	rec, _ := json.Marshal(nodestate.Record{Namespace: ns, Name: name, PodUID: uid})
	if err := os.MkdirAll(nodestate.PodsDir(e.stateDir), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(nodestate.RecordPath(e.stateDir, uid), rec, 0o644); err != nil {
		e.t.Fatal(err)
	}
	e.uids[name] = uid
	return e.sim.AddTestPod(e.t, sim.PodOptions{Name: name, Sidecar: true,
		BeforeStart: func(p *sim.Pod) error { return e.node.AttachPod(uid, p.CgroupDir, cfg) }})
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// result is the outcome of one mesh-accelctl run.
type result struct {
	stdout, stderr string
	code           int
}

// ctl runs mesh-accelctl with args on this node's state.
func (e *env) ctl(args ...string) result {
	return e.ctlContext(context.Background(), nil, args...)
}

// ctlContext runs mesh-accelctl until ctx is done; stderr, when not nil,
// also receives what it prints there.
func (e *env) ctlContext(ctx context.Context, stderr *testenv.SyncBuffer, args ...string) result {
	var out bytes.Buffer
	if stderr == nil {
		stderr = &testenv.SyncBuffer{}
	}
	code := ctl.Main(ctx, append(append([]string{}, e.global...), args...), ctl.Deps{
		Stdout: &out, Stderr: stderr, Getenv: func(string) string { return "" }})
	return result{out.String(), stderr.String(), code}
}

// ok runs mesh-accelctl and fails the test unless it succeeds; it returns
// stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.ctl(args...)
	if r.code != ctl.ExitOK {
		e.t.Fatalf("mesh-accelctl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// json runs mesh-accelctl -o json and decodes its output into v.
func (e *env) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("mesh-accelctl %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// waitNoConns waits until the connection maps are empty again.
func (e *env) waitNoConns() {
	e.t.Helper()
	bpftest.WaitConnsGone(e.t, e.node)
}

// run runs a client and fails the test unless every check passed.
func (e *env) run(p *sim.Pod, spec sim.ClientSpec) *sim.ClientResult {
	e.t.Helper()
	return p.RunCheckedClient(e.t, spec)
}

// background runs a client in a goroutine; wait returns its result.
func (e *env) background(p *sim.Pod, spec sim.ClientSpec) (wait func() *sim.ClientResult) {
	type out struct {
		res *sim.ClientResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := p.RunClient(ctx, spec)
		done <- out{res, err}
	}()
	return func() *sim.ClientResult {
		e.t.Helper()
		o := <-done
		if o.err != nil {
			e.t.Fatal(o.err)
		}
		return o.res
	}
}
