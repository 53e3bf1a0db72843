//go:build meshbench

package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// CaptureResult is what the capture code costs the data path: the 64 B
// request/response rate of accel-all built without it, with it compiled in
// and idle, and while a capture of every message runs (medians).
type CaptureResult struct {
	NoCapture float64 `json:"rr64_nocapture_per_s"`
	Idle      float64 `json:"rr64_idle_per_s"`
	Capturing float64 `json:"rr64_capturing_per_s"`
	Events    uint64  `json:"events_captured"`
	Dropped   uint64  `json:"events_dropped"`
}

// RunCapture measures CaptureResult on its own two pairs of accel-all pods,
// one on node state built without the capture code, interleaved per round.
func RunCapture(ctx context.Context, cfg Config) (*CaptureResult, error) {
	n, err := sim.NewNode(sim.NodeOptions{Prefix: "mc"})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	var pairs [2]*pair
	for i, opts := range []bpf.Options{bpf.Options{}.WithoutCapture(), {}} {
		p, err := newAccelPair(ctx, n, fmt.Sprintf("cap%d", i), cfg.sidecar(), opts)
		if p != nil && p.node != nil {
			defer p.node.Remove()
		}
		if err != nil {
			return nil, err
		}
		pairs[i] = p
	}
	var nocap, idle, capt []float64
	res := &CaptureResult{}
	rr := measurement{name: "capture cost", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.goRR(ctx, d, 64, 1, r, "rr64_per_s")
	}}
	counts := map[*pair]Result{pairs[0]: {}, pairs[1]: {}} // what each pair's measurements counted
	for r := 0; r < cfg.Rounds; r++ {
		for _, step := range []struct {
			p       *pair
			capture bool
			out     *[]float64
		}{{pairs[0], false, &nocap}, {pairs[1], false, &idle}, {pairs[1], true, &capt}} {
			fig := Result{}
			run := func() error { return step.p.measure(ctx, rr, cfg, fig) }
			if step.capture {
				err = withCapture(step.p.node, res, run)
			} else {
				err = run()
			}
			if err != nil {
				return nil, fmt.Errorf("capture cost, round %d: %w", r+1, err)
			}
			*step.out = append(*step.out, fig["rr64_per_s"])
			for _, k := range summedKeys {
				counts[step.p][k] += fig[k]
			}
		}
		if r == 0 {
			for _, p := range pairs {
				if err := p.checkMTLS(counts[p]); err != nil {
					return nil, fmt.Errorf("capture cost: %w", err)
				}
			}
		}
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, "round %d/%d: capture cost done\n", r+1, cfg.Rounds)
		}
	}
	res.NoCapture, res.Idle, res.Capturing = medianOf(nocap), medianOf(idle), medianOf(capt)
	return res, nil
}

// newAccelPair makes an accel-all pair of pods with the kind's sidecars on
// its own node state.
func newAccelPair(ctx context.Context, n *sim.Node, name string, kind SidecarKind, opts bpf.Options) (*pair, error) {
	opts.Root = fmt.Sprintf("mesh-accel-bench-%s-%s", n.Name, name)
	node, err := openNode(opts)
	if err != nil {
		return nil, err
	}
	p := &pair{mode: AccelAll, node: node, envoy: kind == SidecarEnvoy}
	cfg, _ := podConfigs(AccelAll)
	setup := func(pod *sim.Pod) error { return node.AttachPod(pod.Name, pod.CgroupDir, *cfg) }
	oa, ob := kind.podOptions(name+"-a", true), kind.podOptions(name+"-b", true)
	oa.NoApp, oa.BeforeStart, ob.BeforeStart = true, setup, setup
	if p.a, err = n.AddPod(oa); err != nil {
		return p, err
	}
	if p.b, err = n.AddPod(ob); err != nil {
		return p, err
	}
	return p, nil
}

// withCapture runs f while a capture of every message runs and a reader
// drains it, as `mesh-accelctl dump` would.
func withCapture(node *bpf.Node, res *CaptureResult, f func() error) error {
	before, err := node.Counters()
	if err != nil {
		return err
	}
	c, err := node.StartCapture(bpf.CaptureFilter{})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := c.Read(); errors.Is(err, bpf.ErrCaptureClosed) {
				return
			}
		}
	}()
	ferr := f()
	cerr := c.Close()
	<-done
	after, err := node.Counters()
	if err != nil {
		return err
	}
	d := after.Sub(before)
	res.Events += d[bpf.CounterCaptureEvents]
	res.Dropped += d[bpf.CounterCaptureDropped]
	return errors.Join(ferr, cerr)
}
