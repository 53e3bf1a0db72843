//go:build meshbench

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
// node state), so modes never share a socket, a map or a counter. Istio's
// load generator, fortio, runs first: HTTP/1.1 at Istio's published setup
// (1 KiB payload, 16 connections, 1000 requests/s), then a rate sweep to
// saturation; its latency percentiles minus direct's are the latency the
// sidecars add. The standard tools (sockperf, redis-benchmark, wrk
// against nginx, iperf3) run in the pods as the app's user; the
// benchmark's own Go clients add request/response rates and new
// connections per second. Every measurement also gives the CPU it took
// per request (per MiB for iperf3, per connection for new connections):
// the pods' cgroups' and the whole node's (cpu.go).
//
// The sidecars are Envoy, configured as istiod configures a sidecar (the
// simulator's default: mutual TLS on the sidecar-to-sidecar hop, tcp_proxy
// for the TCP services, an HTTP connection manager for nginx), or the
// simulator's Go relay for comparison ([SidecarGo], BENCH_SIDECAR=go).
// Through Envoy, every measurement checks that the server's sidecar
// accepted its connections over mutual TLS, and fails otherwise.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
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
// (bpf.PodConfig.WithOneWay), which the default leaves to the stack.
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

// SidecarKind is the sidecar proxy the pods run.
type SidecarKind string

// The sidecars (BENCH_SIDECAR).
const (
	// SidecarEnvoy is Envoy as istiod configures it (sim.PodOptions.Sidecar).
	SidecarEnvoy SidecarKind = "envoy"
	// SidecarGo is the simulator's Go relay (sim.PodOptions.GoSidecar):
	// plain text, 32 KiB reads, no HTTP parsing.
	SidecarGo SidecarKind = "go"
)

// ParseSidecar reads BENCH_SIDECAR: "envoy" (the default, also for "") or "go".
func ParseSidecar(s string) (SidecarKind, error) {
	switch k := SidecarKind(strings.TrimSpace(s)); k {
	case "", SidecarEnvoy:
		return SidecarEnvoy, nil
	case SidecarGo:
		return k, nil
	default:
		return "", fmt.Errorf("unknown sidecar %q: want %q or %q", s, SidecarEnvoy, SidecarGo)
	}
}

// podOptions are the options of a pod with this sidecar (none if !on).
func (k SidecarKind) podOptions(name string, on bool) sim.PodOptions {
	return sim.PodOptions{Name: name, Sidecar: on && k != SidecarGo, GoSidecar: on && k == SidecarGo}
}

// Describe names the sidecar for the report, e.g. "Envoy 1.40.0 (istiod's
// configuration, mutual TLS between the sidecars)".
func (k SidecarKind) Describe() string {
	if k == SidecarGo {
		return "the simulator's Go relay (plain text between the sidecars)"
	}
	return "Envoy " + envoyVersion() + " (istiod's configuration, mutual TLS between the sidecars)"
}

// envoyVersion is the version of the sidecars' Envoy binary ("?" when
// unknown): 1.40.0 of "PATH  version: HASH/1.40.0/Clean/RELEASE/BoringSSL".
func envoyVersion() string {
	bin, err := sim.EnvoyPath()
	if err != nil {
		return "?"
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "?"
	}
	_, v, ok := strings.Cut(string(out), "version: ")
	if parts := strings.Split(strings.TrimSpace(v), "/"); ok && len(parts) >= 2 {
		return parts[1]
	}
	return "?"
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
	// Sidecar is the pods' sidecar proxy (default SidecarEnvoy).
	Sidecar SidecarKind
	// Profile, when set, picks the measurements during which perf samples
	// every CPU, for the breakdown of where the time goes (BENCH_PROFILE,
	// e.g. "fortio 1000/s"; profile.go).
	Profile *regexp.Regexp
}

func (c Config) sidecar() SidecarKind {
	if c.Sidecar == "" {
		return SidecarEnvoy
	}
	return c.Sidecar
}

// Results are a run's figures: per mode, and the CNI plugin's timing.
type Results struct {
	// Sidecar is the sidecar every mode but direct ran, SidecarDesc its
	// description (with Envoy's version).
	Sidecar     SidecarKind
	SidecarDesc string
	Modes       map[Mode]Result
	// Spread is the range of each figure over the rounds; Rounds their
	// number.
	Spread  Spread
	Rounds  int
	CNI     *CNIResult     // nil when not measured
	Capture *CaptureResult // what the capture code costs
}

// MarshalJSON writes one object keyed by mode (each an object of figures
// keyed as in [Figures] and the counts of [summedKeys]), plus
// "sidecar_proxy" (kind "envoy" or "go", and a description), and "cni" and
// "capture" when measured.
func (r *Results) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, len(r.Modes)+3)
	if r.Sidecar != "" {
		m[keySidecarProxy] = map[string]string{"kind": string(r.Sidecar), "description": r.SidecarDesc}
	}
	for mode, res := range r.Modes {
		m[string(mode)] = res
	}
	if r.CNI != nil {
		m["cni"] = r.CNI
	}
	if r.Capture != nil {
		m["capture"] = r.Capture
	}
	if len(r.Spread) > 0 {
		m[keySpread] = map[string]any{"rounds": r.Rounds, "modes": r.Spread}
	}
	return json.Marshal(m)
}

// keySidecarProxy is the JSON key of the sidecar a run used ("sidecar" is
// a mode).
const keySidecarProxy = "sidecar_proxy"

// keySpread is the JSON key of the figures' ranges over the rounds
// ("spread": {"rounds": N, "modes": {mode: {figure: {"min", "max"}}}}).
const keySpread = "spread"

// Result holds the figures of one mode, keyed as in [Figures], and the
// counts of [summedKeys].
type Result map[string]float64

// MarshalJSON writes the figures in [Figures] order (fortio's first), then
// the other keys in sorted order.
func (r Result) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(r))
	listed := map[string]bool{}
	for _, f := range Figures {
		if _, ok := r[f.Key]; ok {
			keys = append(keys, f.Key)
			listed[f.Key] = true
		}
	}
	var rest []string
	for k := range r {
		if !listed[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range append(keys, rest...) {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		vb, err := json.Marshal(r[k])
		if err != nil {
			return nil, fmt.Errorf("figure %s: %w", k, err)
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// pair is one mode's client pod (a) and server pod (b).
type pair struct {
	mode Mode
	a, b *sim.Pod
	// envoy says the pods run Envoy sidecars: the server's inbound
	// listener must see mutual TLS.
	envoy bool
	node  *bpf.Node // nil when not accelerated
	// redisRate is the last SET/GET rate per connection count, which
	// sizes the next redis-benchmark run.
	redisRate map[int]float64
	// fortio is the fortio binary, whose server runs in pod b ("" when
	// the run does not measure fortio).
	fortio string
}

// Run builds the node, measures every mode Rounds times interleaved and
// returns the median figures per mode; then what the capture code costs;
// then, with cfg.Plugin, the plugin's ADD and DEL timing.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	modes, spread, err := runModes(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := &Results{Modes: modes, Spread: spread, Rounds: cfg.Rounds, Sidecar: cfg.sidecar(), SidecarDesc: cfg.sidecar().Describe()}
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

// runModes measures the modes: the medians of the rounds, and their spread.
func runModes(ctx context.Context, cfg Config) (map[Mode]Result, Spread, error) {
	n, err := sim.NewNode(sim.NodeOptions{Prefix: "mb"})
	if err != nil {
		return nil, nil, err
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
		return nil, nil, err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, nil, err
	}
	var fortio string
	if wantsFortio(cfg) {
		if fortio, err = BuildFortio(ctx, tmp); err != nil {
			return nil, nil, err
		}
	}
	for _, m := range modes {
		dir := filepath.Join(tmp, string(m))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, nil, err
		}
		p, err := newPair(ctx, n, m, cfg.sidecar(), dir, fortio)
		if p != nil {
			pairs = append(pairs, p)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("set up mode %s: %w", m, err)
		}
	}
	samples, err := measureRounds(ctx, cfg, pairs)
	if err != nil {
		return nil, nil, err
	}
	out := map[Mode]Result{}
	for _, m := range modes {
		out[m] = median(samples[m])
	}
	deriveFortio(out)
	return out, spreadOf(samples), nil
}

// measureRounds measures the pairs' modes cfg.Rounds times, interleaved,
// and returns each mode's samples, one per round.
func measureRounds(ctx context.Context, cfg Config, pairs []*pair) (map[Mode][]Result, error) {
	samples := map[Mode][]Result{}
	for _, p := range pairs {
		m := p.mode
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
				res := samples[p.mode][r]
				held, resumed := res[keyFCHeld], res[keyFCResumed]
				if err := p.measure(ctx, m, cfg, res); err != nil {
					return nil, fmt.Errorf("round %d, %s, mode %s: %w", r+1, m.name, p.mode, err)
				}
				if d := res[keyFCHeld] - held; cfg.Log != nil && d > 0 {
					fmt.Fprintf(cfg.Log, "round %d/%d: %s, mode %s: flow control held %.0f directions, resumed %.0f\n",
						r+1, cfg.Rounds, m.name, p.mode, d, res[keyFCResumed]-resumed)
				}
			}
			if cfg.Log != nil {
				fmt.Fprintf(cfg.Log, "round %d/%d: %s done\n", r+1, cfg.Rounds, m.name)
			}
		}
		// Once per run: the first round's pods are new, so the server
		// sidecar must have completed mutual TLS handshakes (later rounds
		// may reuse the HTTP connections Envoy pools).
		for _, p := range pairs {
			if r > 0 {
				break
			}
			if err := p.checkMTLS(samples[p.mode][r]); err != nil {
				return nil, fmt.Errorf("round %d: %w", r+1, err)
			}
		}
	}
	return samples, nil
}

// podConfigs are the acceleration of a mode's client and server pods
// (nil: not attached).
func podConfigs(m Mode) (client, server *bpf.PodConfig) {
	annotation := &bpf.PodConfig{Rules: rules.Default()}
	switch m {
	case Annotation:
		return annotation, annotation
	case AnnotationOneWay:
		c := bpf.PodConfig{Rules: rules.Default()}.WithOneWay()
		return &c, &c
	case SidecarHopOneWay:
		c := bpf.PodConfig{Rules: rules.SidecarHops(nodestate.DefaultSidecarUID)}.WithOneWay()
		return &c, &c
	case Accel:
		c := &bpf.PodConfig{Rules: rules.Default(), TrustApp: true}
		return c, c
	case AccelAll:
		c := &bpf.PodConfig{Rules: &rules.Set{}, TrustApp: true}
		return c, c
	case SidecarHop:
		c := &bpf.PodConfig{Rules: rules.SidecarHops(nodestate.DefaultSidecarUID)}
		return c, c
	case ClientOnly:
		return annotation, nil
	}
	return nil, nil
}

func newPair(ctx context.Context, n *sim.Node, m Mode, kind SidecarKind, dir, fortio string) (*pair, error) {
	p := &pair{mode: m, envoy: m != Direct && kind == SidecarEnvoy, fortio: fortio}
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
	oa, ob := kind.podOptions(string(m)+"-a", sidecar), kind.podOptions(string(m)+"-b", sidecar)
	oa.NoApp, oa.BeforeStart, ob.BeforeStart = true, setup(ca), setup(cb)
	var err error
	if p.a, err = n.AddPod(oa); err != nil {
		return p, err
	}
	if p.b, err = n.AddPod(ob); err != nil {
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

// median takes the per-figure median of the rounds' samples; the counts
// of summedKeys are summed.
func median(rs []Result) Result {
	out := Result{}
	keys := map[string]bool{}
	for _, r := range rs {
		for k := range r {
			keys[k] = true
		}
	}
	for k := range keys {
		if slices.Contains(summedKeys, k) {
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
