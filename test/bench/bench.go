// Package bench measures mesh-accel on a simulated node: the same two-pod
// topology in four modes, measured interleaved so that the ratios between
// modes hold on a noisy, shared machine.
//
//	direct     no sidecars
//	sidecar    sidecars and Istio's iptables rules, no acceleration
//	accel      sidecars + mesh-accel with the default rules
//	accel-all  sidecars + mesh-accel with no rules (every hop)
//
// In both accelerated modes the benchmark's own apps are declared recvmsg
// readers (PodConfig.TrustApp), so the app hops are accelerated both ways.
// Each mode has its own pair of pods (and each accelerated mode its own
// node state), so modes never share a socket, a map or a counter.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Mode is one way of running the two pods.
type Mode string

// The modes, in table order.
const (
	Direct   Mode = "direct"
	Sidecar  Mode = "sidecar"
	Accel    Mode = "accel"
	AccelAll Mode = "accel-all"
)

// Modes lists every mode in table order.
var Modes = []Mode{Direct, Sidecar, Accel, AccelAll}

// Config tunes a run.
type Config struct {
	Duration time.Duration // of each measurement (BENCH_SECONDS)
	Rounds   int           // interleaved rounds; medians are reported
	Log      io.Writer     // progress lines
	// Plugin is the mesh-accel CNI plugin binary whose ADD and DEL are
	// timed after the modes ([MeasureCNI]); empty skips that.
	Plugin string
}

// Results are a run's figures: per mode, and the CNI plugin's timing.
type Results struct {
	Modes   map[Mode]Result
	CNI     *CNIResult     // nil when not measured
	Capture *CaptureResult // what the capture code costs
}

// MarshalJSON writes one object keyed by mode, plus "cni" when measured.
func (r *Results) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Modes)+1)
	for mode, res := range r.Modes {
		m[string(mode)] = res
	}
	if r.CNI != nil {
		m["cni"] = r.CNI
	}
	if r.Capture != nil {
		m["capture"] = r.Capture
	}
	return json.Marshal(m)
}

// Result holds the figures of one mode, with the JSON keys of BENCH_JSON.
type Result struct {
	RR64     float64 `json:"rr64_per_s"`
	RR4K     float64 `json:"rr4k_per_s"`
	RR64x8   float64 `json:"rr64_8conn_per_s"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	BulkGbit float64 `json:"bulk_gbit_s"`
	ConnPerS float64 `json:"conn_per_s"`
	// Redirected is the bytes the data path redirected during this mode's
	// measurements: proof that acceleration really ran (0 for the others).
	Redirected uint64 `json:"redirected_bytes"`
}

// pair is one mode's client pod (a) and server pod (b).
type pair struct {
	mode Mode
	a, b *sim.Pod
	node *bpf.Node // nil when not accelerated
}

// Run builds the node, measures every mode Rounds times interleaved and
// returns the median figures per mode; then what the capture code costs;
// then, with cfg.Plugin, the plugin's ADD and DEL timing.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	modes, err := runModes(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &Results{Modes: modes}
	if res.Capture, err = RunCapture(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Plugin != "" {
		if res.CNI, err = MeasureCNI(ctx, CNIConfig{Plugin: cfg.Plugin, Log: cfg.Log}); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// runModes measures the modes.
func runModes(ctx context.Context, cfg Config) (map[Mode]Result, error) {
	n, err := sim.NewNode(sim.NodeOptions{Prefix: "mb"})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	pairs := make([]*pair, 0, len(Modes))
	defer func() {
		for _, p := range pairs {
			if p.node != nil {
				p.node.Remove()
			}
		}
	}()
	for _, m := range Modes {
		p, err := newPair(ctx, n, m)
		if p != nil {
			pairs = append(pairs, p)
		}
		if err != nil {
			return nil, fmt.Errorf("set up mode %s: %w", m, err)
		}
	}
	samples := map[Mode][]Result{}
	for r := 0; r < cfg.Rounds; r++ {
		for _, m := range measurements {
			// Rotate the order of modes per round and measurement so that
			// no mode always runs first or last.
			for i := range pairs {
				p := pairs[(i+r)%len(pairs)]
				if err := p.measure(ctx, m, cfg, samplesFor(samples, p.mode, r)); err != nil {
					return nil, fmt.Errorf("round %d, %s, mode %s: %w", r+1, m.name, p.mode, err)
				}
			}
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "round %d/%d: %s done\n", r+1, cfg.Rounds, m.name)
			}
		}
	}
	out := map[Mode]Result{}
	for _, m := range Modes {
		out[m] = median(samples[m])
	}
	return out, nil
}

// samplesFor returns the round's sample of mode, growing the slice.
func samplesFor(s map[Mode][]Result, m Mode, round int) *Result {
	for len(s[m]) <= round {
		s[m] = append(s[m], Result{})
	}
	return &s[m][round]
}

// podConfig is the acceleration of a mode's pods, or nil.
func podConfig(m Mode) *bpf.PodConfig {
	switch m {
	case Accel:
		return &bpf.PodConfig{Rules: rules.Default(), TrustApp: true}
	case AccelAll:
		return &bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}
	}
	return nil
}

func newPair(ctx context.Context, n *sim.Node, m Mode) (*pair, error) {
	p := &pair{mode: m}
	var setup func(*sim.Pod) error
	if cfg := podConfig(m); cfg != nil {
		node, err := bpf.OpenNode(bpf.Options{Root: fmt.Sprintf("mesh-accel-bench-%s-%s", n.Name, m)})
		if err != nil {
			return nil, err
		}
		p.node = node
		setup = func(pod *sim.Pod) error { return node.AttachPod(pod.Name, pod.CgroupDir, *cfg) }
	}
	sidecar := m != Direct
	var err error
	if p.a, err = n.AddPod(sim.PodOptions{Name: string(m) + "-a", Sidecar: sidecar, NoApp: true, BeforeStart: setup}); err != nil {
		return p, err
	}
	if p.b, err = n.AddPod(sim.PodOptions{Name: string(m) + "-b", Sidecar: sidecar, BeforeStart: setup}); err != nil {
		return p, err
	}
	return p, p.startServers(ctx)
}

// median takes the per-figure median of the rounds' samples.
func median(rs []Result) Result {
	pick := func(f func(Result) float64) float64 {
		v := make([]float64, 0, len(rs))
		for _, r := range rs {
			v = append(v, f(r))
		}
		if len(v) == 0 {
			return 0
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	var red uint64
	for _, r := range rs {
		red += r.Redirected
	}
	return Result{
		RR64:       pick(func(r Result) float64 { return r.RR64 }),
		RR4K:       pick(func(r Result) float64 { return r.RR4K }),
		RR64x8:     pick(func(r Result) float64 { return r.RR64x8 }),
		P50us:      pick(func(r Result) float64 { return r.P50us }),
		P99us:      pick(func(r Result) float64 { return r.P99us }),
		BulkGbit:   pick(func(r Result) float64 { return r.BulkGbit }),
		ConnPerS:   pick(func(r Result) float64 { return r.ConnPerS }),
		Redirected: red,
	}
}
