//go:build meshbench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// fortio is Istio's load generator (fortio.org/fortio, a tool of go.mod):
// its echo server in the server pod, `fortio load` in the client pod,
// HTTP/1.1 through both sidecars (port 18081 is an HTTP service of
// sim.DefaultServices: an HTTP connection manager in both Envoys, mutual
// TLS between them).
const (
	fortioPort = 18081
	// fortioConns and fortioPayload are Istio's published setup: 16
	// connections, 1 KiB payload (a POST that the echo server returns).
	fortioConns   = 16
	fortioPayload = 1024
	// fortioResolution is the histogram's bucket width in seconds (10 µs;
	// fortio's default, 1 ms, is coarser than the differences measured).
	fortioResolution = "0.00001"
)

// fortioPercentiles are the percentiles reported, with their key suffix.
var fortioPercentiles = []struct {
	p   float64
	key string
	lbl string
}{{50, "p50", "P50"}, {90, "p90", "P90"}, {99, "p99", "P99"}, {99.9, "p999", "P99.9"}}

// fortioRates are the rates measured: Istio's fixed rate first (its
// figures lead the report), then the sweep to saturation (0: as fast as
// 16 connections go, fortio's -qps -1).
var fortioRates = []int{1000, 2000, 4000, 0}

// fortioStem is the key stem of a rate's figures: "fortio" for Istio's
// fixed rate, "fortio_2000" ... "fortio_max" for the sweep.
func fortioStem(qps int) string {
	switch {
	case qps == fortioRates[0]:
		return "fortio"
	case qps <= 0:
		return "fortio_max"
	}
	return "fortio_" + strconv.Itoa(qps)
}

// fortioName is a rate's measurement name (BENCH_ONLY matches it).
func fortioName(qps int) string {
	if qps <= 0 {
		return "fortio max"
	}
	return fmt.Sprintf("fortio %d/s", qps)
}

// fortioMeasurements are the fortio measurements, one per rate.
func fortioMeasurements() []measurement {
	var out []measurement
	for _, qps := range fortioRates {
		out = append(out, measurement{name: fortioName(qps), cpu: fortioStem(qps), unit: "req",
			run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
				return p.fortioLoad(ctx, d, qps, r)
			},
			warm: func(ctx context.Context, p *pair) error { return p.fortioWarm(ctx) }})
	}
	return out
}

// Keys of the figures derived after the medians ([deriveFortio]).
const (
	keyFortioPodsVCPU  = "fortio_cpu_pods_vcpu_per_1k_rps"
	keyFortioNodeVCPU  = "fortio_cpu_node_vcpu_per_1k_rps"
	keyFortioAddedVCPU = "fortio_added_cpu_pods_vcpu_per_1k_rps"
)

// fortioFigures are fortio's figures in table order: at Istio's fixed rate
// the latency the sidecars add (mode minus direct) and the CPU per request
// first, then the mode's own percentiles; then the sweep.
func fortioFigures() []Figure {
	fixed := fortioName(fortioRates[0])
	var out []Figure
	for _, q := range fortioPercentiles {
		out = append(out, Figure{"fortio_added_" + q.key + "_ms", fixed + " added " + q.lbl + " ms", true})
	}
	out = append(out, cpuFigures("fortio", "req", fixed)...)
	out = append(out,
		Figure{keyFortioPodsVCPU, fixed + " vCPU per 1000 req/s pods", true},
		Figure{keyFortioNodeVCPU, fixed + " vCPU per 1000 req/s node", true},
		Figure{keyFortioAddedVCPU, fixed + " added vCPU per 1000 req/s pods", true})
	for _, q := range fortioPercentiles {
		out = append(out, Figure{"fortio_" + q.key + "_ms", fixed + " " + q.lbl + " ms", true})
	}
	out = append(out, Figure{"fortio_qps", fixed + " achieved req/s", false})
	for _, qps := range fortioRates[1:] {
		stem, name := fortioStem(qps), fortioName(qps)
		out = append(out,
			Figure{stem + "_qps", name + " achieved req/s", false},
			Figure{stem + "_p90_ms", name + " P90 ms", true},
			Figure{stem + "_p99_ms", name + " P99 ms", true})
		out = append(out, cpuFigures(stem, "req", name)...)
	}
	return out
}

// deriveFortio adds, after the medians, the fixed rate's vCPU per 1000
// requests/s (Istio's unit: µs per request / 1000) and, when direct was
// measured, what each mode adds to direct: the latency percentiles and the
// pods' vCPU (mode minus direct, of the medians; 0 for direct itself).
func deriveFortio(res map[Mode]Result) {
	for _, r := range res {
		pods, node := cpuKeys("fortio", "req")
		if v, ok := r[pods]; ok {
			r[keyFortioPodsVCPU] = v / 1000
		}
		if v, ok := r[node]; ok {
			r[keyFortioNodeVCPU] = v / 1000
		}
	}
	base, ok := res[Direct]
	if !ok {
		return
	}
	added := map[string]string{keyFortioPodsVCPU: keyFortioAddedVCPU}
	for _, q := range fortioPercentiles {
		added["fortio_"+q.key+"_ms"] = "fortio_added_" + q.key + "_ms"
	}
	for _, r := range res {
		for from, to := range added {
			v, ok := r[from]
			b, bok := base[from]
			if ok && bok {
				r[to] = v - b
			}
		}
	}
}

// FortioRun is what parseFortio takes from `fortio load -json -`.
type FortioRun struct {
	QPS      float64             // achieved requests/s
	Requests float64             // requests done, the warm-up's included
	PctMS    map[float64]float64 // percentile -> latency in ms
}

// fortioReport is the part of fortio's JSON result that the benchmark reads.
type fortioReport struct {
	RunType           string
	ActualQPS         float64
	NumThreads        int
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	RetCodes map[string]int64
}

// parseFortio reads the JSON result of `fortio load -json -`. Any answer
// but 200 is an error, as are missing percentiles. The requests counted
// include fortio's warm-up (one per connection), which falls in the CPU
// window too.
func parseFortio(out []byte) (FortioRun, error) {
	var rep fortioReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return FortioRun{}, fmt.Errorf("parse fortio -json output: %w", err)
	}
	h := rep.DurationHistogram
	if rep.RunType != "HTTP" || h.Count == 0 || rep.ActualQPS <= 0 {
		return FortioRun{}, fmt.Errorf("fortio: no HTTP requests measured (run type %q, %d requests, %.0f/s)", rep.RunType, h.Count, rep.ActualQPS)
	}
	var bad []string
	for code, n := range rep.RetCodes {
		if code != "200" && n > 0 {
			bad = append(bad, fmt.Sprintf("%d answers %s", n, code))
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return FortioRun{}, fmt.Errorf("fortio: %s of %d requests (-1: connection errors)", strings.Join(bad, ", "), h.Count)
	}
	run := FortioRun{QPS: rep.ActualQPS, Requests: float64(h.Count + int64(rep.NumThreads)), PctMS: map[float64]float64{}}
	for _, p := range h.Percentiles {
		run.PctMS[p.Percentile] = p.Value * 1e3
	}
	for _, q := range fortioPercentiles {
		if _, ok := run.PctMS[q.p]; !ok {
			return FortioRun{}, fmt.Errorf("fortio: no P%g in the result", q.p)
		}
	}
	return run, nil
}

// fortioWarmPerConn is how many requests each connection sends in the
// warm-up before every fortio measurement, as fast as they go.
const fortioWarmPerConn = 20

// fortioWarm runs an unmeasured `fortio load` of fortioWarmPerConn
// requests per connection, so that the measured run finds the sidecars'
// upstream connections, with their TLS handshakes, made.
func (p *pair) fortioWarm(ctx context.Context) error {
	if p.fortio == "" {
		return fmt.Errorf("fortio: not started in this run")
	}
	return WarmFortio(ctx, p.fortio, p.a, p.b)
}

// fortioLoad runs Istio's setup at qps requests/s (0: as fast as it goes)
// for d ([LoadFortio]) and records the achieved rate and the percentiles
// under the rate's stem. It returns the requests done.
func (p *pair) fortioLoad(ctx context.Context, d time.Duration, qps int, r Result) (float64, error) {
	if p.fortio == "" {
		return 0, fmt.Errorf("fortio: not started in this run")
	}
	run, err := LoadFortio(ctx, p.fortio, p.a, p.b, qps, d)
	if err != nil {
		return 0, err
	}
	stem := fortioStem(qps)
	r[stem+"_qps"] = run.QPS
	for _, q := range fortioPercentiles {
		r[stem+"_"+q.key+"_ms"] = run.PctMS[q.p]
	}
	return run.Requests, nil
}

// WarmFortio runs an unmeasured `fortio load` from client to server's
// fortio, fortioWarmPerConn requests per connection as fast as they go.
func WarmFortio(ctx context.Context, bin string, client, server *sim.Pod) error {
	_, err := runIn(ctx, client, 0, bin, "load", "-qps", "-1", "-c", strconv.Itoa(fortioConns),
		"-n", strconv.Itoa(fortioConns*fortioWarmPerConn), "-payload-size", strconv.Itoa(fortioPayload),
		fmt.Sprintf("http://%s:%d/", server.IPv4, fortioPort))
	return err
}

// LoadFortio runs `fortio load` in the client pod against the server
// pod's fortio ([StartFortio]) at qps requests/s (0: as fast as it goes)
// for d, with Istio's setup (16 connections, 1 KiB payload, HTTP/1.1).
func LoadFortio(ctx context.Context, bin string, client, server *sim.Pod, qps int, d time.Duration) (FortioRun, error) {
	rate := strconv.Itoa(qps)
	if qps <= 0 {
		rate = "-1"
	}
	pcts := make([]string, len(fortioPercentiles))
	for i, q := range fortioPercentiles {
		pcts[i] = strconv.FormatFloat(q.p, 'f', -1, 64)
	}
	out, err := runIn(ctx, client, d, bin, "load", "-qps", rate, "-c", strconv.Itoa(fortioConns), "-t", d.String(),
		"-payload-size", strconv.Itoa(fortioPayload), "-r", fortioResolution, "-p", strings.Join(pcts, ","), "-json", "-",
		fmt.Sprintf("http://%s:%d/", server.IPv4, fortioPort))
	if err != nil {
		return FortioRun{}, err
	}
	return parseFortio([]byte(out))
}

// runIn runs a tool in pod p as its app user and returns its output.
func runIn(ctx context.Context, p *sim.Pod, d time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	proc, err := p.Start(ctx, sim.ProcSpec{Argv: argv, UID: p.Options.AppUID, GID: p.Options.AppGID})
	if err != nil {
		return "", err
	}
	if err := proc.Wait(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", argv[0], err, proc.Stderr()+proc.Stdout())
	}
	return proc.Stdout(), nil
}

// wantsFortio says whether a run measures fortio (BENCH_ONLY may leave it out).
func wantsFortio(cfg Config) bool {
	return cfg.Only == nil || slices.ContainsFunc(fortioRates, func(q int) bool { return cfg.Only.MatchString(fortioName(q)) })
}

// BuildFortio builds fortio (a tool of go.mod) into dir, where the pods'
// users can run it, and returns its path. It runs the go command in the
// working directory, which must be inside this module.
func BuildFortio(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fortio")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "fortio.org/fortio").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build fortio (go build fortio.org/fortio; run the benchmark from the repository, whose go.mod has it as a tool): %w: %s", err, out)
	}
	return bin, nil
}

// startFortio starts fortio's echo server in the server pod ([StartFortio]).
func (p *pair) startFortio(ctx context.Context, dir string) error {
	return StartFortio(ctx, p.fortio, p.b, dir)
}

// StartFortio starts fortio's echo server on fortioPort in pod p as the app
// user, its other servers off. fortio logs to stderr, which the shell
// gives stdout, where Start watches for the ready line.
func StartFortio(ctx context.Context, bin string, p *sim.Pod, dir string) error {
	uid, gid := p.Options.AppUID, p.Options.AppGID
	_, err := p.Start(ctx, sim.ProcSpec{Argv: []string{"sh", "-c",
		`exec "$0" server -http-port "$1" -grpc-port disabled -redirect-port disabled -tcp-port disabled -udp-port disabled -data-dir "$2" 2>&1`,
		bin, strconv.Itoa(fortioPort), dir}, UID: uid, GID: gid, Ready: "http-echo server listening"})
	if err != nil {
		return fmt.Errorf("start fortio server: %w", err)
	}
	return nil
}
