//go:build meshbench

package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Ports of the standard tools' servers in the server pod.
const (
	iperfPort    = 5201
	sockperfPort = 11111
	redisPort    = 6379
	nginxPort    = 18080
)

// Figure is one number the benchmark reports per mode, with its JSON key.
type Figure struct {
	Key   string // JSON key
	Label string // table and chart label
	Lower bool   // lower is better (latency)
}

// Figures lists every figure in table order: fortio's first (at Istio's
// fixed rate, the latency the sidecars add and the CPU per request lead),
// then the standard tools, then the benchmark's own Go clients; each
// measurement's CPU per unit of work beside its figures ([cpuFigures]).
// The keys of earlier versions stay (p50_us, p99_us, bulk_gbit_s,
// conn_per_s, rr*_per_s).
var Figures = slices.Concat(
	fortioFigures(),
	profileFigures(),
	[]Figure{
		{"p50_us", "sockperf 64 B p50 µs", true},
		{"p99_us", "sockperf 64 B p99 µs", true},
		{"sockperf64_avg_us", "sockperf 64 B avg µs", true},
	},
	cpuFigures("sockperf64", "req", "sockperf 64 B"),
	[]Figure{
		{"sockperf4k_p50_us", "sockperf 4 KiB p50 µs", true},
		{"sockperf4k_p99_us", "sockperf 4 KiB p99 µs", true},
		{"sockperf4k_avg_us", "sockperf 4 KiB avg µs", true},
	},
	cpuFigures("sockperf4k", "req", "sockperf 4 KiB"),
	[]Figure{
		{"redis_get_c1_per_s", "redis GET -c 1 /s", false},
		{"redis_set_c1_per_s", "redis SET -c 1 /s", false},
	},
	cpuFigures("redis_c1", "req", "redis -c 1"),
	[]Figure{
		{"redis_get_c8_per_s", "redis GET -c 8 /s", false},
		{"redis_set_c8_per_s", "redis SET -c 8 /s", false},
	},
	cpuFigures("redis_c8", "req", "redis -c 8"),
	[]Figure{
		{"redis_get_c50_per_s", "redis GET -c 50 /s", false},
		{"redis_set_c50_per_s", "redis SET -c 50 /s", false},
	},
	cpuFigures("redis_c50", "req", "redis -c 50"),
	[]Figure{
		{"wrk_1k_per_s", "wrk nginx 1 KiB req/s", false},
		{"wrk_1k_p99_ms", "wrk nginx 1 KiB p99 ms", true},
	},
	cpuFigures("wrk_1k", "req", "wrk 1 KiB"),
	[]Figure{
		{"wrk_100k_per_s", "wrk nginx 100 KiB req/s", false},
		{"wrk_100k_p99_ms", "wrk nginx 100 KiB p99 ms", true},
	},
	cpuFigures("wrk_100k", "req", "wrk 100 KiB"),
	[]Figure{{"bulk_gbit_s", "iperf3 1 stream Gbit/s", false}},
	cpuFigures("bulk", "MiB", "iperf3 1 stream"),
	[]Figure{{"bulk4_gbit_s", "iperf3 4 streams Gbit/s", false}},
	cpuFigures("bulk4", "MiB", "iperf3 4 streams"),
	[]Figure{
		{"conn_per_s", "new connections /s", false},
		{"bpf_conn_us", "BPF µs per new connection", true},
	},
	cpuFigures("conn", "conn", "new connections"),
	[]Figure{{"rr64_per_s", "Go rr 64 B /s", false}},
	cpuFigures("rr64", "req", "Go rr 64 B"),
	[]Figure{{"rr4k_per_s", "Go rr 4 KiB /s", false}},
	cpuFigures("rr4k", "req", "Go rr 4 KiB"),
	[]Figure{{"rr64_8conn_per_s", "Go rr 64 B x8 /s", false}},
	cpuFigures("rr64_8conn", "req", "Go rr 64 B x8"),
)

// Counts per mode, summed over rounds (not medians), besides [Figures]:
const (
	// keyRedirected counts the bytes the data path redirected during a
	// mode's measurements: proof that acceleration ran (0 for the others).
	keyRedirected = "redirected_bytes"
	// keyFCHeld and keyFCResumed count how often flow control moved a
	// direction to the stack (its reader held the backlog limit of unread
	// bytes) and redirected it again (bpf counters flow_control_held and
	// flow_control_resumed).
	keyFCHeld    = "flow_control_held"
	keyFCResumed = "flow_control_resumed"
	// keyHandshakes and keyInboundConns count the TLS handshakes and the
	// connections of the server sidecar's inbound listener (Envoy's
	// listener.0.0.0.0_15006.ssl.handshake and downstream_cx_total):
	// through Envoy, proof that the sidecar-to-sidecar hop ran over mutual
	// TLS (the listener requires client certificates).
	keyHandshakes   = "mtls_handshakes"
	keyInboundConns = "inbound_connections"
)

// summedKeys are the counts that rounds sum.
var summedKeys = []string{keyRedirected, keyFCHeld, keyFCResumed, keyHandshakes, keyInboundConns}

// Envoy's stats of the inbound listener (virtualInbound, 0.0.0.0:15006).
const (
	statHandshakes   = "listener.0.0.0.0_15006.ssl.handshake"
	statInboundConns = "listener.0.0.0.0_15006.downstream_cx_total"
)

// measurement is one or more figures measured the same way in every mode.
// Its run returns the work it did (requests or round trips, connections,
// or MiB), by which the CPU spent meanwhile is divided into the figures
// named by [cpuKeys] after its cpu stem and unit.
type measurement struct {
	name string
	cpu  string // key stem of the CPU figures ("" for none)
	unit string // unit of the work: "req", "conn" or "MiB"
	run  func(ctx context.Context, p *pair, d time.Duration, r Result) (work float64, err error)
	// warm, if set, runs before the CPU window and the run, unmeasured:
	// new connections and TLS handshakes are then outside the figures
	// (the mutual TLS check still counts them).
	warm func(ctx context.Context, p *pair) error
}

// measurements are run in this order in every round: fortio first.
var measurements = slices.Concat(fortioMeasurements(), []measurement{
	{name: "sockperf 64 B", cpu: "sockperf64", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.sockperf(ctx, d, 64, r, "p50_us", "p99_us", "sockperf64_avg_us")
	}},
	{name: "sockperf 4 KiB", cpu: "sockperf4k", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.sockperf(ctx, d, 4096, r, "sockperf4k_p50_us", "sockperf4k_p99_us", "sockperf4k_avg_us")
	}},
	{name: "redis -c 1", cpu: "redis_c1", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.redis(ctx, d, 1, r)
	}},
	{name: "redis -c 8", cpu: "redis_c8", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.redis(ctx, d, 8, r)
	}},
	{name: "redis -c 50", cpu: "redis_c50", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.redis(ctx, d, 50, r)
	}},
	{name: "wrk 1 KiB", cpu: "wrk_1k", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.wrk(ctx, d, "1k", r, "wrk_1k_per_s", "wrk_1k_p99_ms")
	}},
	{name: "wrk 100 KiB", cpu: "wrk_100k", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.wrk(ctx, d, "100k", r, "wrk_100k_per_s", "wrk_100k_p99_ms")
	}},
	{name: "iperf3 1 stream", cpu: "bulk", unit: "MiB", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.iperf(ctx, d, 1, r, "bulk_gbit_s")
	}},
	{name: "iperf3 4 streams", cpu: "bulk4", unit: "MiB", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.iperf(ctx, d, 4, r, "bulk4_gbit_s")
	}},
	{name: "connections", cpu: "conn", unit: "conn", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.connections(ctx, d, r)
	}},
	{name: "Go rr 64 B", cpu: "rr64", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.goRR(ctx, d, 64, 1, r, "rr64_per_s")
	}},
	{name: "Go rr 4 KiB", cpu: "rr4k", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.goRR(ctx, d, 4096, 1, r, "rr4k_per_s")
	}},
	{name: "Go rr 64 B x8", cpu: "rr64_8conn", unit: "req", run: func(ctx context.Context, p *pair, d time.Duration, r Result) (float64, error) {
		return p.goRR(ctx, d, 64, 8, r, "rr64_8conn_per_s")
	}},
})

// measure runs one measurement and adds the CPU it took per unit of work
// (the pods' cgroups and the node, read right around the run: see cpu.go),
// and what the data path's counters and the server sidecar's inbound
// listener counted meanwhile. Through
// Envoy, a measurement whose connections reached the server's sidecar in
// plain text fails: the sidecar-to-sidecar hop must be mutual TLS.
func (p *pair) measure(ctx context.Context, m measurement, cfg Config, r Result) error {
	before, err := p.counts()
	if err != nil {
		return err
	}
	if m.warm != nil {
		if err := m.warm(ctx, p); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	cpu0, err := readCPU(p.a.CgroupDir, p.b.CgroupDir)
	if err != nil {
		return err
	}
	var prof *profiler
	if cfg.Profile != nil && cfg.Profile.MatchString(m.name) && m.cpu != "" {
		if prof, err = startProfile(ctx, os.TempDir()); err != nil {
			return err
		}
	}
	work, err := m.run(ctx, p, cfg.Duration, r)
	if err != nil {
		if prof != nil {
			_, _ = prof.stop(ctx)
		}
		return err
	}
	cpu1, err := readCPU(p.a.CgroupDir, p.b.CgroupDir)
	if err != nil {
		return err
	}
	if m.cpu != "" {
		cpu1.since(cpu0).record(r, m.cpu, m.unit, work)
	}
	if prof != nil {
		secs, err := prof.stop(ctx)
		if err != nil {
			return err
		}
		recordProfile(r, m.cpu, secs, work)
	}
	after, err := p.counts()
	if err != nil {
		return err
	}
	for k, v := range after { // only the counts this mode has
		r[k] += v - before[k]
	}
	if !p.envoy {
		return nil
	}
	conns, tls := after[keyInboundConns]-before[keyInboundConns], after[keyHandshakes]-before[keyHandshakes]
	if conns > tls {
		return fmt.Errorf("NO MUTUAL TLS: the server sidecar's inbound listener accepted %.0f connections and completed %.0f TLS handshakes "+
			"(%s, %s): a connection reached it in plain text, so this figure does not measure Istio's sidecar hop", conns, tls, statInboundConns, statHandshakes)
	}
	return nil
}

// counts reads the counters of summedKeys: the data path's (0 when the
// mode is not accelerated) and the server Envoy's (only when it runs
// Envoy).
func (p *pair) counts() (Result, error) {
	r := Result{keyRedirected: 0, keyFCHeld: 0, keyFCResumed: 0} // 0 when not accelerated
	if p.node != nil {
		c, err := p.node.Counters()
		if err != nil {
			return nil, err
		}
		r[keyRedirected] = float64(c[bpf.CounterBytesRedirected])
		r[keyFCHeld] = float64(c[bpf.CounterFlowControlHeld])
		r[keyFCResumed] = float64(c[bpf.CounterFlowControlResumed])
	}
	if p.envoy {
		for k, stat := range map[string]string{keyHandshakes: statHandshakes, keyInboundConns: statInboundConns} {
			v, err := p.b.EnvoyStat(stat)
			if err != nil {
				return nil, err
			}
			r[k] = float64(v)
		}
	}
	return r, nil
}

// checkMTLS fails a mode run through Envoy whose server sidecar completed
// no mutual TLS handshake in a round: its figures would not measure the
// sidecar hop as Istio runs it.
func (p *pair) checkMTLS(r Result) error {
	if p.envoy && r[keyHandshakes] == 0 {
		return fmt.Errorf("NO MUTUAL TLS in mode %s: the server sidecar (%s) completed no TLS handshake on its inbound listener "+
			"(%s = 0) during a whole round; the benchmark would be measuring something other than Istio's sidecar hop", p.mode, p.b.Name, statHandshakes)
	}
	return nil
}

// startServers starts iperf3, sockperf, redis-server, nginx and, when the
// run measures fortio, fortio's echo server in the server pod as the app
// user, after the pod's acceleration is in place.
func (p *pair) startServers(ctx context.Context, dir string) error {
	uid, gid := p.b.Options.AppUID, p.b.Options.AppGID
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"iperf3", "-s", "--forceflush", "-p", strconv.Itoa(iperfPort)},
		UID: uid, GID: gid, Ready: "Server listening"}); err != nil {
		return fmt.Errorf("start iperf3 server: %w", err)
	}
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"sockperf", "sr", "--tcp", "-i", "0.0.0.0",
		"-p", strconv.Itoa(sockperfPort)}, UID: uid, GID: gid, Ready: "to block on socket"}); err != nil {
		return fmt.Errorf("start sockperf server: %w", err)
	}
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"redis-server", "--port", strconv.Itoa(redisPort),
		"--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", dir},
		UID: uid, GID: gid, Ready: "Ready to accept connections"}); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	conf, err := nginxConfig(dir, uid, gid)
	if err != nil {
		return err
	}
	// nginx logs to stderr; the shell gives it stdout, where Start
	// watches for the ready line.
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"sh", "-c", `exec nginx -p "$0" -c "$1" -e stderr -g 'daemon off;' 2>&1`,
		dir, conf}, UID: uid, GID: gid, Ready: "start worker process"}); err != nil {
		return fmt.Errorf("start nginx: %w", err)
	}
	if p.fortio == "" {
		return nil
	}
	return p.startFortio(ctx, dir)
}

// nginxConfig writes an nginx configuration serving /1k and /100k with
// HTTP/1.1 keep-alive from dir, all of whose paths the app user owns.
func nginxConfig(dir string, uid, gid uint32) (string, error) {
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return "", err
	}
	if err := os.MkdirAll(www, 0o755); err != nil {
		return "", err
	}
	for name, size := range map[string]int{"1k": 1 << 10, "100k": 100 << 10} {
		if err := os.WriteFile(filepath.Join(www, name), []byte(strings.Repeat("x", size)), 0o644); err != nil {
			return "", err
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	text := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr notice;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[1]s/tmp/body;
	proxy_temp_path %[1]s/tmp/proxy;
	fastcgi_temp_path %[1]s/tmp/fastcgi;
	uwsgi_temp_path %[1]s/tmp/uwsgi;
	scgi_temp_path %[1]s/tmp/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 300s;
	server {
		listen %[2]d;
		root %[1]s/www;
		default_type application/octet-stream;
	}
}
`, dir, nginxPort)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return "", err
	}
	return conf, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, int(uid), int(gid))
	})
}

func (p *pair) client(ctx context.Context, spec sim.ClientSpec) (*sim.ClientResult, error) {
	res, err := p.a.RunClient(ctx, spec)
	if err != nil {
		return nil, err
	}
	if !res.OK {
		return nil, fmt.Errorf("client %s: %v", spec.Mode, res.Errors)
	}
	return res, nil
}

// goRR measures the rate of size-byte round trips on streams connections
// with the simulator's Go client; it returns the round trips done.
func (p *pair) goRR(ctx context.Context, d time.Duration, size, streams int, r Result, key string) (float64, error) {
	res, err := p.client(ctx, sim.ClientSpec{Mode: sim.ModeRR, Target: p.b.AppTarget(false),
		Size: size, Streams: streams, Duration: d})
	if err != nil {
		return 0, err
	}
	r[key] = res.RatePerSec
	return res.RatePerSec * res.ElapsedSec, nil
}

// runTool runs a tool in the client pod as the app user and returns its
// output ([runIn]).
func (p *pair) runTool(ctx context.Context, d time.Duration, argv ...string) (string, error) {
	return runIn(ctx, p.a, d, argv...)
}

func seconds(d time.Duration) string { return strconv.Itoa(max(1, int(d.Seconds()+0.5))) }

var (
	percentileRE = regexp.MustCompile(`percentile (50|99)\.000 =\s*([0-9.]+)`)
	avgRE        = regexp.MustCompile(`avg-latency=([0-9.]+)`)
	// sockperfRunRE is the whole run's count of answers (warm-up included).
	sockperfRunRE = regexp.MustCompile(`\[Total Run\].*ReceivedMessages=([0-9]+)`)
)

// sockperf measures ping-pong latency (p50, p99, average) of size-byte
// messages with sockperf; it returns the round trips of the whole run.
func (p *pair) sockperf(ctx context.Context, d time.Duration, size int, r Result, p50, p99, avg string) (float64, error) {
	out, err := p.runTool(ctx, d, "sockperf", "pp", "--tcp", "-i", p.b.IPv4.String(),
		"-p", strconv.Itoa(sockperfPort), "-m", strconv.Itoa(size), "-t", seconds(d))
	if err != nil {
		return 0, err
	}
	for _, m := range percentileRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r[p50] = v
		} else {
			r[p99] = v
		}
	}
	if m := avgRE.FindStringSubmatch(out); m != nil {
		r[avg], _ = strconv.ParseFloat(m[1], 64)
	}
	m := sockperfRunRE.FindStringSubmatch(out)
	if r[p50] == 0 || r[p99] == 0 || r[avg] == 0 || m == nil {
		return 0, fmt.Errorf("no latencies or message count in sockperf output: %s", out)
	}
	n, err := strconv.ParseFloat(m[1], 64)
	return n, err
}

// redis runs redis-benchmark's SET and GET with conns connections. It
// counts requests, not time: the count is sized for d from the pair's
// last rate, measured first with a short run. It returns the requests
// done, the short run's included.
func (p *pair) redis(ctx context.Context, d time.Duration, conns int, r Result) (float64, error) {
	if p.redisRate == nil {
		p.redisRate = map[int]float64{}
	}
	set, get := redisKeys(conns)
	var work float64
	if p.redisRate[conns] == 0 {
		probe := Result{}
		if err := p.redisRun(ctx, d, conns, 200*conns, probe); err != nil {
			return 0, err
		}
		p.redisRate[conns] = min(probe[set], probe[get])
		work += 2 * 200 * float64(conns)
	}
	n := max(200*conns, int(p.redisRate[conns]*d.Seconds()/2)) // SET, then GET: d in all
	if err := p.redisRun(ctx, d, conns, n, r); err != nil {
		return 0, err
	}
	p.redisRate[conns] = min(r[set], r[get])
	return work + 2*float64(n), nil
}

// redisKeys are the JSON keys of the SET and GET rates at conns connections.
func redisKeys(conns int) (set, get string) {
	return fmt.Sprintf("redis_set_c%d_per_s", conns), fmt.Sprintf("redis_get_c%d_per_s", conns)
}

func (p *pair) redisRun(ctx context.Context, d time.Duration, conns, n int, r Result) error {
	out, err := p.runTool(ctx, 4*d, "redis-benchmark", "-h", p.b.IPv4.String(), "-p", strconv.Itoa(redisPort),
		"-c", strconv.Itoa(conns), "-n", strconv.Itoa(n), "-t", "set,get", "--csv")
	if err != nil {
		return err
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		return fmt.Errorf("parse redis-benchmark --csv: %w: %s", err, out)
	}
	set, get := redisKeys(conns)
	for _, rec := range recs {
		if len(rec) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil {
			continue // the header
		}
		switch rec[0] {
		case "SET":
			r[set] = v
		case "GET":
			r[get] = v
		}
	}
	if r[set] == 0 || r[get] == 0 {
		return fmt.Errorf("no SET and GET rates in redis-benchmark output: %s", out)
	}
	return nil
}

var (
	wrkRateRE = regexp.MustCompile(`Requests/sec:\s*([0-9.]+)`)
	wrkP99RE  = regexp.MustCompile(`\n\s*99%\s+([0-9.]+)(us|ms|s)`)
	wrkReqsRE = regexp.MustCompile(`([0-9]+) requests in `)
)

// wrk measures HTTP/1.1 keep-alive requests against nginx: rate and p99.
// It returns the requests done.
func (p *pair) wrk(ctx context.Context, d time.Duration, path string, r Result, rate, p99 string) (float64, error) {
	out, err := p.runTool(ctx, d, "wrk", "-t", "1", "-c", "8", "-d", seconds(d)+"s", "--latency",
		fmt.Sprintf("http://%s:%d/%s", p.b.IPv4, nginxPort, path))
	if err != nil {
		return 0, err
	}
	m, q, n := wrkRateRE.FindStringSubmatch(out), wrkP99RE.FindStringSubmatch(out), wrkReqsRE.FindStringSubmatch(out)
	if m == nil || q == nil || n == nil || strings.Contains(out, "Non-2xx") || strings.Contains(out, "Socket errors") {
		return 0, fmt.Errorf("wrk: no rate, p99 and count, or errors: %s", out)
	}
	r[rate], _ = strconv.ParseFloat(m[1], 64)
	v, _ := strconv.ParseFloat(q[1], 64)
	r[p99] = v * map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3}[q[2]]
	return strconv.ParseFloat(n[1], 64)
}

// iperf measures bulk throughput with iperf3 and streams parallel
// streams. It returns the MiB received.
func (p *pair) iperf(ctx context.Context, d time.Duration, streams int, r Result, key string) (float64, error) {
	out, err := p.runTool(ctx, d, "iperf3", "-c", p.b.IPv4.String(), "-p", strconv.Itoa(iperfPort),
		"-t", seconds(d), "-P", strconv.Itoa(streams), "-J")
	if err != nil {
		return 0, err
	}
	var rep struct {
		End struct {
			SumReceived struct {
				Bytes         float64 `json:"bytes"`
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return 0, fmt.Errorf("parse iperf3 -J output: %w", err)
	}
	if rep.Error != "" || rep.End.SumReceived.BitsPerSecond == 0 {
		return 0, fmt.Errorf("iperf3: %q", rep.Error)
	}
	r[key] = rep.End.SumReceived.BitsPerSecond / 1e9
	return rep.End.SumReceived.Bytes / (1 << 20), nil
}

// connections measures new connections per second through both sidecars
// and, where the data path runs, the time its programs took per
// connection, as the kernel counts it (BPF statistics are on meanwhile):
// a figure the machine's noise does not move. It returns the connections
// completed.
func (p *pair) connections(ctx context.Context, d time.Duration, r Result) (float64, error) {
	var before []bpf.ProgramStat
	if p.node != nil {
		stats, err := bpf.EnableStats()
		if err != nil {
			return 0, err
		}
		defer stats.Close()
		if before, err = p.node.ProgramStats(); err != nil {
			return 0, err
		}
	}
	res, err := p.client(ctx, sim.ClientSpec{Mode: sim.ModeConnRate, Target: p.b.AppTarget(false), Duration: d})
	if err != nil {
		return 0, err
	}
	r["conn_per_s"] = res.RatePerSec
	conns := float64(res.Conns)
	if p.node == nil || res.Conns == 0 {
		return conns, nil
	}
	after, err := p.node.ProgramStats()
	if err != nil {
		return 0, err
	}
	var spent time.Duration
	for i := range after {
		spent += after[i].Runtime - before[i].Runtime
	}
	r["bpf_conn_us"] = float64(spent.Microseconds()) / float64(res.Conns)
	return conns, nil
}
