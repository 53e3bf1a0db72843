// Package bench measures mesh-accel on a simulated node: the same two-pod
// topology in seven modes, measured interleaved so that the ratios between
// modes hold on a noisy, shared machine.
//
//	direct       no sidecars
//	sidecar      sidecars and Istio's iptables rules, no acceleration
//	annotation   sidecars + mesh-accel as the annotation alone sets it up:
//	             the default rules, apps not declared recvmsg readers
//	accel        the default rules, apps declared recvmsg readers
//	accel-all    no rules (every hop), apps declared recvmsg readers
//	sidecar-hop  apps not declared; every hop of the sidecar's uid,
//	             the sidecar-to-sidecar hop to port 15006 included
//	client-only  the client pod as in annotation, the server pod not
//	             attached: the shape of traffic to a pod on another node
//
// Each mode has its own pair of pods (and each accelerated mode its own
// node state), so modes never share a socket, a map or a counter. The
// standard tools (sockperf, redis-benchmark, wrk against nginx, iperf3)
// run in the pods as the app's user; the benchmark's own Go clients add
// request/response rates and new connections per second.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Mode is one way of running the two pods.
type Mode string

// The modes, in table order.
const (
	Direct     Mode = "direct"
	Sidecar    Mode = "sidecar"
	Annotation Mode = "annotation"
	Accel      Mode = "accel"
	AccelAll   Mode = "accel-all"
	SidecarHop Mode = "sidecar-hop"
	ClientOnly Mode = "client-only"
)

// Variants measured on demand (BENCH_MODES): the annotation and the
// sidecar-hop profile with one-way acceleration allowed
// (bpf.PodConfig.OneWay), which the default leaves to the stack.
const (
	AnnotationOneWay Mode = "annotation-1way"
	SidecarHopOneWay Mode = "sidecar-hop-1way"
)

// Modes lists the modes a run measures by default, in table order.
var Modes = []Mode{Direct, Sidecar, Annotation, Accel, AccelAll, SidecarHop, ClientOnly}

// AllModes lists every mode in table order.
var AllModes = []Mode{Direct, Sidecar, Annotation, AnnotationOneWay, Accel, AccelAll, SidecarHop, SidecarHopOneWay, ClientOnly}

// ParseModes reads a comma list of modes; the sidecar mode, the baseline
// of every ratio, is always measured.
func ParseModes(list string) ([]Mode, error) {
	want := map[Mode]bool{Sidecar: true}
	for _, name := range strings.Split(list, ",") {
		m := Mode(strings.TrimSpace(name))
		if m == "" {
			continue
		}
		if !slices.Contains(AllModes, m) {
			return nil, fmt.Errorf("unknown mode %q: want some of %v", m, AllModes)
		}
		want[m] = true
	}
	var out []Mode
	for _, m := range AllModes {
		if want[m] {
			out = append(out, m)
		}
	}
	return out, nil
}

// Config tunes a run.
type Config struct {
	Duration time.Duration // of each measurement (BENCH_SECONDS)
	Rounds   int           // interleaved rounds; medians are reported
	Log      io.Writer     // progress lines
	// Plugin is the mesh-accel CNI plugin binary whose ADD and DEL are
	// timed after the modes ([MeasureCNI]); empty skips that.
	Plugin string
	// Modes are the modes measured (default Modes).
	Modes []Mode
	// Only, when set, picks the measurements whose name it matches
	// (BENCH_ONLY, e.g. "connections|sockperf 64 B"); the capture's cost
	// is measured only when it matches "capture".
	Only *regexp.Regexp
}

// Results are a run's figures: per mode, and the CNI plugin's timing.
type Results struct {
	Modes   map[Mode]Result
	CNI     *CNIResult     // nil when not measured
	Capture *CaptureResult // what the capture code costs
}

// MarshalJSON writes one object keyed by mode (each an object of figures
// keyed as in [Figures]), plus "cni" and "capture" when measured.
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

// Result holds the figures of one mode, keyed as in [Figures], and
// keyRedirected.
type Result map[string]float64

// pair is one mode's client pod (a) and server pod (b).
type pair struct {
	mode Mode
	a, b *sim.Pod
	node *bpf.Node // nil when not accelerated
	// redisRate is the last SET/GET rate per connection count, which
	// sizes the next redis-benchmark run.
	redisRate map[int]float64
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
	if cfg.Only == nil || cfg.Only.MatchString("capture") {
		if res.Capture, err = RunCapture(ctx, cfg); err != nil {
			return nil, err
		}
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
	modes := cfg.Modes
	if len(modes) == 0 {
		modes = Modes
	}
	pairs := make([]*pair, 0, len(modes))
	defer func() {
		for _, p := range pairs {
			if p.node != nil {
				p.node.Remove()
			}
		}
	}()
	tmp, err := os.MkdirTemp("", "mesh-accel-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	for _, m := range modes {
		dir := filepath.Join(tmp, string(m))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		p, err := newPair(ctx, n, m, dir)
		if p != nil {
			pairs = append(pairs, p)
		}
		if err != nil {
			return nil, fmt.Errorf("set up mode %s: %w", m, err)
		}
	}
	samples := map[Mode][]Result{}
	for _, m := range modes {
		samples[m] = make([]Result, cfg.Rounds)
		for r := range samples[m] {
			samples[m][r] = Result{}
		}
	}
	for r := 0; r < cfg.Rounds; r++ {
		for _, m := range measurements {
			if cfg.Only != nil && !cfg.Only.MatchString(m.name) {
				continue
			}
			// Rotate the order of modes per round and measurement so that
			// no mode always runs first or last.
			for i := range pairs {
				p := pairs[(i+r)%len(pairs)]
				if err := p.measure(ctx, m, cfg, samples[p.mode][r]); err != nil {
					return nil, fmt.Errorf("round %d, %s, mode %s: %w", r+1, m.name, p.mode, err)
				}
			}
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "round %d/%d: %s done\n", r+1, cfg.Rounds, m.name)
			}
		}
	}
	out := map[Mode]Result{}
	for _, m := range modes {
		out[m] = median(samples[m])
	}
	return out, nil
}

// podConfigs are the acceleration of a mode's client and server pods
// (nil: not attached).
func podConfigs(m Mode) (client, server *bpf.PodConfig) {
	annotation := &bpf.PodConfig{Rules: rules.Default()}
	switch m {
	case Annotation:
		return annotation, annotation
	case AnnotationOneWay:
		c := &bpf.PodConfig{Rules: rules.Default(), OneWay: true}
		return c, c
	case SidecarHopOneWay:
		c := &bpf.PodConfig{Rules: rules.SidecarHops(rules.DefaultSidecarUID), OneWay: true}
		return c, c
	case Accel:
		c := &bpf.PodConfig{Rules: rules.Default(), TrustApp: true}
		return c, c
	case AccelAll:
		c := &bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}
		return c, c
	case SidecarHop:
		c := &bpf.PodConfig{Rules: rules.SidecarHops(rules.DefaultSidecarUID)}
		return c, c
	case ClientOnly:
		return annotation, nil
	}
	return nil, nil
}

func newPair(ctx context.Context, n *sim.Node, m Mode, dir string) (*pair, error) {
	p := &pair{mode: m}
	ca, cb := podConfigs(m)
	setup := func(cfg *bpf.PodConfig) func(*sim.Pod) error {
		if cfg == nil {
			return nil
		}
		return func(pod *sim.Pod) error { return p.node.AttachPod(pod.Name, pod.CgroupDir, *cfg) }
	}
	if ca != nil {
		node, err := openNode(bpf.Options{Root: fmt.Sprintf("mesh-accel-bench-%s-%s", n.Name, m)})
		if err != nil {
			return nil, err
		}
		p.node = node
	}
	sidecar := m != Direct
	var err error
	if p.a, err = n.AddPod(sim.PodOptions{Name: string(m) + "-a", Sidecar: sidecar, NoApp: true, BeforeStart: setup(ca)}); err != nil {
		return p, err
	}
	if p.b, err = n.AddPod(sim.PodOptions{Name: string(m) + "-b", Sidecar: sidecar, BeforeStart: setup(cb)}); err != nil {
		return p, err
	}
	return p, p.startServers(ctx, dir)
}

// openNode opens the node state of a mode; when that fails, it removes
// what it pinned (the state's maps), which bpf.OpenNode keeps so that the
// next opener can complete the state.
func openNode(opts bpf.Options) (*bpf.Node, error) {
	node, err := bpf.OpenNode(opts)
	if err != nil {
		return nil, errors.Join(err, os.RemoveAll(filepath.Dir(opts.Dir())))
	}
	return node, nil
}

// median takes the per-figure median of the rounds' samples; the
// redirected bytes are summed.
func median(rs []Result) Result {
	out := Result{}
	keys := map[string]bool{}
	for _, r := range rs {
		for k := range r {
			keys[k] = true
		}
	}
	for k := range keys {
		if k == keyRedirected {
			for _, r := range rs {
				out[k] += r[k]
			}
			continue
		}
		v := make([]float64, 0, len(rs))
		for _, r := range rs {
			if x, ok := r[k]; ok {
				v = append(v, x)
			}
		}
		out[k] = medianOf(v)
	}
	return out
}

// medianOf is the median of v (0 when empty).
func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = append([]float64(nil), v...)
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
