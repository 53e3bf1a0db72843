package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Ports of the standard tools' servers in the server pod.
const (
	iperfPort    = 5201
	sockperfPort = 11111
)

// measurement is one figure (or two) measured the same way in every mode.
type measurement struct {
	name string
	run  func(ctx context.Context, p *pair, d time.Duration, r *Result) error
}

var measurements = []measurement{
	{"rr64", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		return p.goRR(ctx, d, 64, 1, &r.RR64)
	}},
	{"rr4k", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		return p.goRR(ctx, d, 4096, 1, &r.RR4K)
	}},
	{"rr64x8", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		return p.goRR(ctx, d, 64, 8, &r.RR64x8)
	}},
	{"latency (sockperf)", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		return p.sockperf(ctx, d, r)
	}},
	{"bulk (iperf3)", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		return p.iperf(ctx, d, r)
	}},
	{"connections", func(ctx context.Context, p *pair, d time.Duration, r *Result) error {
		res, err := p.client(ctx, sim.ClientSpec{Mode: sim.ModeConnRate, Target: p.b.AppTarget(false), Duration: d})
		if err == nil {
			r.ConnPerS = res.RatePerSec
		}
		return err
	}},
}

// measure runs one measurement and adds the bytes redirected meanwhile.
func (p *pair) measure(ctx context.Context, m measurement, cfg Config, r *Result) error {
	before, err := p.redirected()
	if err != nil {
		return err
	}
	if err := m.run(ctx, p, cfg.Duration, r); err != nil {
		return err
	}
	after, err := p.redirected()
	r.Redirected += after - before
	return err
}

func (p *pair) redirected() (uint64, error) {
	if p.node == nil {
		return 0, nil
	}
	c, err := p.node.Counters()
	return c["bytes_redirected"], err
}

// startServers starts iperf3 and sockperf in the server pod as the app
// user, after the pod's acceleration is in place.
func (p *pair) startServers(ctx context.Context) error {
	uid, gid := p.b.Options.AppUID, p.b.Options.AppGID
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"iperf3", "-s", "--forceflush", "-p", strconv.Itoa(iperfPort)},
		UID: uid, GID: gid, Ready: "Server listening"}); err != nil {
		return fmt.Errorf("start iperf3 server: %w", err)
	}
	if _, err := p.b.Start(ctx, sim.ProcSpec{Argv: []string{"sockperf", "sr", "--tcp", "-i", "0.0.0.0",
		"-p", strconv.Itoa(sockperfPort)}, UID: uid, GID: gid, Ready: "to block on socket"}); err != nil {
		return fmt.Errorf("start sockperf server: %w", err)
	}
	return nil
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

func (p *pair) goRR(ctx context.Context, d time.Duration, size, streams int, out *float64) error {
	res, err := p.client(ctx, sim.ClientSpec{Mode: sim.ModeRR, Target: p.b.AppTarget(false),
		Size: size, Streams: streams, Duration: d})
	if err == nil {
		*out = res.RatePerSec
	}
	return err
}

// runTool runs a tool in the client pod as the app user and returns its
// standard output.
func (p *pair) runTool(ctx context.Context, d time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	proc, err := p.a.Start(ctx, sim.ProcSpec{Argv: argv, UID: p.a.Options.AppUID, GID: p.a.Options.AppGID})
	if err != nil {
		return "", err
	}
	if err := proc.Wait(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", argv[0], err, proc.Stderr()+proc.Stdout())
	}
	return proc.Stdout(), nil
}

var percentileRE = regexp.MustCompile(`percentile (50|99)\.000 =\s*([0-9.]+)`)

// sockperf measures 64 B ping-pong latency percentiles with sockperf.
func (p *pair) sockperf(ctx context.Context, d time.Duration, r *Result) error {
	secs := strconv.Itoa(max(1, int(d.Seconds()+0.5)))
	out, err := p.runTool(ctx, d, "sockperf", "pp", "--tcp", "-i", p.b.IPv4.String(),
		"-p", strconv.Itoa(sockperfPort), "-m", "64", "-t", secs)
	if err != nil {
		return err
	}
	for _, m := range percentileRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		if m[1] == "50" {
			r.P50us = v
		} else {
			r.P99us = v
		}
	}
	if r.P50us == 0 || r.P99us == 0 {
		return fmt.Errorf("no percentiles in sockperf output: %s", out)
	}
	return nil
}

// iperf measures one stream's bulk throughput with iperf3.
func (p *pair) iperf(ctx context.Context, d time.Duration, r *Result) error {
	secs := strconv.Itoa(max(1, int(d.Seconds()+0.5)))
	out, err := p.runTool(ctx, d, "iperf3", "-c", p.b.IPv4.String(), "-p", strconv.Itoa(iperfPort),
		"-t", secs, "-J")
	if err != nil {
		return err
	}
	var rep struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		return fmt.Errorf("parse iperf3 -J output: %w", err)
	}
	if rep.Error != "" || rep.End.SumReceived.BitsPerSecond == 0 {
		return fmt.Errorf("iperf3: %q", rep.Error)
	}
	r.BulkGbit = rep.End.SumReceived.BitsPerSecond / 1e9
	return nil
}
