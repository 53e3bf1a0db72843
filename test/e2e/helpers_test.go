package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// roles are the programs the test binary becomes in a pod, by the
// environment variable that names them and carries their argument.
var roles = map[string]func(string){
	envDeferServer: deferServer,
	envLateReader:  lateReader,
	envIso:         isoRole,
	envRawWriter:   rawWriter,
	envCaptureRole: captureRole,
	envSockopt:     sockoptRole,
}

func TestMain(m *testing.M) {
	sim.RoleMain()
	for env, role := range roles {
		if arg := os.Getenv(env); arg != "" {
			role(arg)
			return
		}
	}
	os.Exit(m.Run())
}

// optsDefault is node state with the default map sizes.
var optsDefault = bpf.Options{}

// Pod configurations used across the tests. The annotation alone gives a
// pod annotationCfg: the default rules, the app not declared a recvmsg
// reader, so its hops are not accelerated. oneWayCfg and allOneWayCfg allow
// the one-way acceleration of such hops (towards the sidecar only), the
// paths that must stay safe for apps that read with splice: WithOneWay, a
// benchmark knob, exists in builds with -tags meshbench only (make test
// passes it).
var (
	annotationCfg = bpf.PodConfig{Rules: rules.Default()}
	oneWayCfg     = bpf.PodConfig{Rules: rules.Default()}.WithOneWay()
	allCfg        = bpf.PodConfig{Rules: &rules.Set{}}
	allOneWayCfg  = bpf.PodConfig{Rules: &rules.Set{}}.WithOneWay()
	trustedAll    = bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}
)

// env is a simulated node with its own mesh-accel state.
type env struct {
	t    *testing.T
	node *bpf.Node
	sim  *sim.Node
	pods []*sim.Pod // in the order added, for the state dump of a stall
}

func newEnv(t *testing.T, opts bpf.Options) *env {
	t.Helper()
	e := &env{t: t, sim: sim.NewTestNode(t, sim.NodeOptions{})}
	e.node = bpftest.NewNode(t, opts)
	return e
}

// pod adds a pod; with cfg non-nil its acceleration is attached before its
// processes start (as the CNI plugin does at sandbox creation).
func (e *env) pod(name string, sidecar bool, cfg *bpf.PodConfig) *sim.Pod {
	e.t.Helper()
	opts := sim.PodOptions{Name: name, Sidecar: sidecar}
	if cfg != nil {
		c := *cfg
		opts.BeforeStart = func(p *sim.Pod) error { return e.node.AttachPod(p.Name, p.CgroupDir, c) }
	}
	p := e.sim.AddTestPod(e.t, opts)
	e.pods = append(e.pods, p)
	return p
}

func (e *env) counters() bpf.Counters {
	e.t.Helper()
	c, err := e.node.Counters()
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// run runs a client in pod and fails the test unless every check passed.
// It returns the result and the counters' change during the run.
func (e *env) run(p *sim.Pod, spec sim.ClientSpec) (*sim.ClientResult, bpf.Counters) {
	e.t.Helper()
	before := e.counters()
	// A run stalled for 20 s (these take a few seconds) logs the state of
	// every pod of the test before the client's own deadline ends it.
	res := e.runWatchedAfter(p, spec, 20*time.Second, e.pods...)
	if !res.OK {
		e.t.Fatalf("client %s in %s: %d errors, %d mismatches: %v", spec.Mode, p.Name, res.ErrorCount, res.Mismatches, res.Errors)
	}
	e.waitNoConns()
	return res, e.counters().Sub(before)
}

// waitNoConns waits until the connection maps are empty again.
func (e *env) waitNoConns() {
	e.t.Helper()
	bpftest.WaitConnsGone(e.t, e.node)
}

// want checks counters against expected values.
func want(t *testing.T, got bpf.Counters, exp map[string]uint64) {
	t.Helper()
	for k, v := range exp {
		if g := got[bpf.Counter(k)]; g != v {
			t.Errorf("counter %s = %d, want %d (all: %v)", k, g, v, got)
		}
	}
}

// wantRedirected checks that at least least bytes were redirected, or,
// when flow control held a direction during the run (a sidecar or app fell
// behind, which a loaded machine makes likely), that some were: what
// flow control carries on the stack is not redirected. what names the
// bytes expected.
func wantRedirected(t *testing.T, c bpf.Counters, least uint64, what string) {
	t.Helper()
	got, held := c["bytes_redirected"], c["flow_control_held"]
	switch {
	case held == 0 && got < least:
		t.Errorf("bytes_redirected = %d, want >= %d (%s)", got, least, what)
	case held > 0 && got == 0:
		t.Errorf("bytes_redirected = 0 (%s; flow control held %d directions)", what, held)
	case held > 0 && got < least:
		t.Logf("bytes_redirected = %d < %d (%s): flow control held %d directions, which carried the rest on the stack",
			got, least, what, held)
	}
}

// wantPositive checks that counters moved.
func wantPositive(t *testing.T, got bpf.Counters, names ...bpf.Counter) {
	t.Helper()
	for _, k := range names {
		if got[k] == 0 {
			t.Errorf("counter %s = 0, want > 0 (all: %v)", k, got)
		}
	}
}
