package sim

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// NewTestNode creates a node for a test and closes it at the test's end.
// Without root, cgroup v2 or the required tools it skips the test (fails it
// under CI, see testenv).
func NewTestNode(tb testing.TB, opts NodeOptions) *Node {
	tb.Helper()
	testenv.RequireRoot(tb)
	if _, err := cgroupv2.Mount(); err != nil {
		testenv.Missing(tb, "cgroup v2: %v", err)
	}
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t); err != nil {
			testenv.Missing(tb, "%s in PATH", t)
		}
	}
	n, err := NewNode(opts)
	if err != nil {
		tb.Fatalf("new node: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return n
}

// AddTestPod adds a pod or fails the test (a pod with an Envoy sidecar
// and no Envoy installed skips it locally, fails it under CI). The pod goes away with the node.
func (n *Node) AddTestPod(tb testing.TB, opts PodOptions) *Pod {
	tb.Helper()
	if opts.Sidecar && !opts.GoSidecar && !opts.SidecarSplice {
		if _, err := EnvoyPath(); err != nil {
			testenv.Missing(tb, "%v", err)
		}
	}
	p, err := n.AddPod(opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return p
}

// RunTestClient runs a client (bounded to a minute) or fails the test if it
// cannot run; the checks in the result are left to the caller.
func (p *Pod) RunTestClient(tb testing.TB, spec ClientSpec) *ClientResult {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := p.RunClient(ctx, spec)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return res
}

// RunCheckedClient runs a client and fails the test unless every check of
// it passed (no error, no mismatch).
func (p *Pod) RunCheckedClient(tb testing.TB, spec ClientSpec) *ClientResult {
	tb.Helper()
	res := p.RunTestClient(tb, spec)
	if !res.OK {
		tb.Fatalf("client %s in %s: %d errors, %d mismatches: %v", spec.Mode, p.Name, res.ErrorCount, res.Mismatches, res.Errors)
	}
	return res
}
