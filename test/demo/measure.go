package demo

import (
	"cmp"
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// figures are one column of the demo's table.
type figures struct {
	rr64, p50, bulkGbit float64
	redirected          uint64
}

// measure runs the same traffic with acceleration off (global switch) and
// on, for pods of the sidecar-hops profile and for pods whose app is
// declared a recvmsg reader, prints the table and what is accelerated.
func (w *world) measure(ctx context.Context, cfg Config, pairs [][2]*cnichain.Pod) error {
	cols := []struct {
		name string
		pair [2]*cnichain.Pod
		on   bool
	}{
		{"acceleration off", pairs[0], false},
		{"on (sidecar-hops)", pairs[0], true},
		{"on (app trusted)", pairs[1], true},
	}
	// Rounds alternate the columns, and each figure is the median of its
	// rounds, so that a noisy moment does not decide a column.
	samples := make([][]figures, len(cols))
	for r := 0; r < demoRounds; r++ {
		for i, c := range cols {
			if err := w.node.SetEnabled(c.on); err != nil {
				return err
			}
			f, err := w.traffic(ctx, cfg, c.pair)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			samples[i] = append(samples[i], f)
		}
	}
	res := make([]figures, len(cols))
	for i := range cols {
		res[i] = medianFigures(samples[i])
	}
	fmt.Fprintf(cfg.Out, "medians of %d alternating rounds:\n", demoRounds)
	tw := tabwriter.NewWriter(cfg.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "productpage -> reviews, through both Envoy sidecars (mTLS)\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprint(tw, "\n")
	row := func(name, format string, get func(figures) float64) {
		fmt.Fprintf(tw, "%s\t", name)
		for _, f := range res {
			fmt.Fprintf(tw, format+"\t", get(f))
		}
		fmt.Fprint(tw, "\n")
	}
	row("64 B request/response per s", "%.0f", func(f figures) float64 { return f.rr64 })
	row("64 B round trip p50 (us)", "%.0f", func(f figures) float64 { return f.p50 })
	row("bulk, one stream (Gbit/s)", "%.2f", func(f figures) float64 { return f.bulkGbit })
	row("bytes redirected, all rounds (MiB)", "%.0f", func(f figures) float64 { return float64(f.redirected) / (1 << 20) })
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := showMTLS(cfg, pairs); err != nil {
		return err
	}
	return w.showAccelerated(ctx, cfg, pairs)
}

// statHandshakes counts the TLS handshakes of a sidecar's inbound listener
// (it requires a client certificate: each is a mutual TLS handshake).
const statHandshakes = "listener.0.0.0.0_15006.ssl.handshake"

// showMTLS prints the mutual TLS handshakes of each server pod's sidecar,
// and fails if one completed none: the sidecar-to-sidecar hop the demo
// accelerates is mutual TLS, as in Istio.
func showMTLS(cfg Config, pairs [][2]*cnichain.Pod) error {
	var parts []string
	for _, pair := range pairs {
		n, err := pair[1].EnvoyStat(statHandshakes)
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no mutual TLS: the sidecar of %s completed no TLS handshake (%s = 0), so its traffic did not take Istio's sidecar-to-sidecar hop",
				pair[1].Name, statHandshakes)
		}
		parts = append(parts, fmt.Sprintf("%s %d", pair[1].Name, n))
	}
	_, err := fmt.Fprintf(cfg.Out, "mutual TLS handshakes completed by the server sidecars (Envoy %s): %s\n", statHandshakes, strings.Join(parts, ", "))
	return err
}

// traffic measures one column: a request/response run and a checksummed
// bulk transfer, with the bytes redirected meanwhile.
func (w *world) traffic(ctx context.Context, cfg Config, pair [2]*cnichain.Pod) (figures, error) {
	var f figures
	before, err := w.node.Counters()
	if err != nil {
		return f, err
	}
	rr, err := run(ctx, pair[0], sim.ClientSpec{Mode: sim.ModeRR, Target: pair[1].AppTarget(false), Size: 64, Duration: cfg.Duration})
	if err != nil {
		return f, err
	}
	bulk, err := run(ctx, pair[0], sim.ClientSpec{Mode: sim.ModeBulk, Target: pair[1].AppTarget(false),
		Bytes: cmp.Or(cfg.BulkBytes, 256<<20), MinWrite: 64 << 10, MaxWrite: 256 << 10})
	if err != nil {
		return f, err
	}
	after, err := w.node.Counters()
	if err != nil {
		return f, err
	}
	f.rr64, f.p50, f.bulkGbit = rr.RatePerSec, rr.P50us, bulk.RatePerSec*8/1e9
	f.redirected = after.Sub(before)["bytes_redirected"]
	return f, nil
}

func run(ctx context.Context, p *cnichain.Pod, spec sim.ClientSpec) (*sim.ClientResult, error) {
	res, err := p.RunClient(ctx, spec)
	if err != nil {
		return nil, err
	}
	if !res.OK {
		return nil, fmt.Errorf("%s client: %v", spec.Mode, res.Errors)
	}
	return res, nil
}

// showAccelerated lists the pairs recorded during a request/response run
// of each pod pair, direction by direction.
func (w *world) showAccelerated(ctx context.Context, cfg Config, pairs [][2]*cnichain.Pod) error {
	for i, pair := range pairs {
		ds, err := w.directionsDuring(ctx, pair)
		if err != nil {
			return err
		}
		title := []string{"accel.mesh/profile: \"sidecar-hops\": the sidecar-to-sidecar hop (mutual TLS records, redirected as they are), both ways (the apps may read with splice: their hops stay on the stack)",
			"accel.mesh/app-reads-with-recvmsg: \"true\": the hops between each app and its sidecar (the default rules exclude port 15006)"}[i]
		fmt.Fprintf(cfg.Out, "\nwhat is accelerated, %s\n", title)
		sortDirections(ds)
		tw := tabwriter.NewWriter(cfg.Out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  from\tto\tpath\t")
		for _, d := range ds {
			path := "stack (reader not trusted)"
			if d.Redirect {
				path = "redirected"
			}
			fmt.Fprintf(tw, "  %s (uid %d)\t%s (uid %d)\t%s\t\n", d.From, d.FromUID, d.To, d.ToUID, path)
		}
		if i == 1 {
			fmt.Fprintln(tw, "  sidecar -> peer sidecar (port 15006)\t\tstack (rule: chain --port 15006 -j RETURN)\t")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// directionsDuring snapshots the recorded pairs while a request/response
// client runs.
func (w *world) directionsDuring(ctx context.Context, pair [2]*cnichain.Pod) ([]bpf.Direction, error) {
	errc := make(chan error, 1)
	go func() {
		_, err := run(ctx, pair[0], sim.ClientSpec{Mode: sim.ModeRR, Target: pair[1].AppTarget(false), Duration: time.Second})
		errc <- err
	}()
	var best []bpf.Direction
	for {
		select {
		case err := <-errc:
			return best, err
		case <-time.After(50 * time.Millisecond):
			ds, err := w.node.Directions()
			if err != nil {
				return nil, err
			}
			if len(ds) > len(best) {
				best = ds
			}
		}
	}
}

// demoRounds is how many times each column is measured.
const demoRounds = 3

// medianFigures takes each figure's median over the rounds (and the sum of
// the bytes redirected).
func medianFigures(fs []figures) figures {
	med := func(get func(figures) float64) float64 {
		v := make([]float64, len(fs))
		for i, f := range fs {
			v[i] = get(f)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	out := figures{
		rr64:     med(func(f figures) float64 { return f.rr64 }),
		p50:      med(func(f figures) float64 { return f.p50 }),
		bulkGbit: med(func(f figures) float64 { return f.bulkGbit }),
	}
	for _, f := range fs {
		out.redirected += f.redirected
	}
	return out
}
