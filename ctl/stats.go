package ctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/metricnames"
)

// statsSample is one reading of the counters; PerSec is set when watching.
type statsSample struct {
	Time     time.Time               `json:"time"`
	Counters bpf.Counters            `json:"counters"`
	PerSec   map[bpf.Counter]float64 `json:"per_sec,omitempty"`
	Interval float64                 `json:"interval_sec,omitempty"`
}

func (a *app) statsCmd() *cobra.Command {
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "stats [--watch [INTERVAL]]",
		Short: "Show the data path's counters; --watch prints them with rates per second until Ctrl-C",
		Long: `stats prints the data path's counters, summed over CPUs, with what each counts. With --watch
it prints them every INTERVAL (1s by default; --watch 5s or --watch=5s) with the rate per second
of each over the last interval, until interrupted. -o wide adds the series of the installer's
/metrics that exports each counter (mesh_accel_..., with its reason label) and what it counts. With
-o json, --watch prints one JSON object per line; with -o yaml, one YAML document per sample.`,
		Example: `  mesh-accelctl stats
  mesh-accelctl stats -o wide       # with each counter's metric of the installer's /metrics
  mesh-accelctl stats --watch 5s`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			watching := cmd.Flags().Changed(FlagWatch)
			if len(args) == 1 {
				if !watching {
					return usageErrorf("unexpected argument %q", args[0])
				}
				d, err := time.ParseDuration(args[0])
				if err != nil {
					return usageErrorf("--%s %q: not a duration (like 1s, 500ms)", FlagWatch, args[0])
				}
				every = d
			}
			if !watching {
				return a.statsOnce()
			}
			if every <= 0 {
				return usageErrorf("--%s interval must be positive", FlagWatch)
			}
			return a.watchStats(cmd.Context(), every)
		},
	}
	cmd.Flags().DurationVar(&every, FlagWatch, time.Second, "print the counters and their rates every interval")
	cmd.Flags().Lookup(FlagWatch).NoOptDefVal = "1s"
	return cmd
}

func (a *app) statsOnce() error {
	eng, err := a.engine()
	if err != nil {
		return err
	}
	c, err := eng.Counters()
	if err != nil {
		return err
	}
	s := statsSample{Time: time.Now(), Counters: c}
	return a.emit(s, func(w io.Writer) error {
		t := a.table(w, a.columns([]string{"COUNTER", "VALUE"}, "METRIC", "COUNTS")...)
		for _, name := range counterOrder(c) {
			t.row(a.cells([]any{name, c[name]}, counterSeries(name), bpf.CounterHelp(name))...)
		}
		return t.flush()
	})
}

// watchStats prints the counters and their rates every interval until ctx
// is done.
func (a *app) watchStats(ctx context.Context, every time.Duration) error {
	eng, err := a.engine()
	if err != nil {
		return err
	}
	prev, err := eng.Counters()
	if err != nil {
		return err
	}
	prevT := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	enc := a.streamer(a.deps.Stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		c, err := eng.Counters()
		if err != nil {
			return err
		}
		now := time.Now()
		s := rates(prev, c, now.Sub(prevT))
		s.Time = now
		prev, prevT = c, now
		if a.cfg.structured() {
			err = enc.write(s)
		} else {
			err = a.renderRates(a.deps.Stdout, s)
		}
		if err != nil {
			return err
		}
	}
}

// rates is the sample of cur with each counter's change since prev per
// second over elapsed (0 for a counter that went back: node state
// recreated).
func rates(prev, cur bpf.Counters, elapsed time.Duration) statsSample {
	s := statsSample{Counters: cur, PerSec: map[bpf.Counter]float64{}, Interval: elapsed.Seconds()}
	for name, v := range cur {
		if old, ok := prev[name]; ok && v >= old && elapsed > 0 {
			s.PerSec[name] = float64(v-old) / elapsed.Seconds()
		}
	}
	return s
}

func (a *app) renderRates(w io.Writer, s statsSample) error {
	fmt.Fprintf(w, "%s (rates over %.1fs)\n", s.Time.Format("15:04:05"), s.Interval)
	t := a.table(w, a.columns([]string{"COUNTER", "TOTAL", "PER SEC"}, "METRIC", "COUNTS")...)
	for _, name := range counterOrder(s.Counters) {
		t.row(a.cells([]any{name, s.Counters[name], fmt.Sprintf("%.1f", s.PerSec[name])}, counterSeries(name),
			bpf.CounterHelp(name))...)
	}
	if err := t.flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w)
	return err
}

// counterSeries names the series of the installer's /metrics that exports
// the engine counter name ("" when none does).
func counterSeries(name bpf.Counter) string {
	if c, ok := metricnames.Of(name); ok {
		return c.Series()
	}
	return ""
}

// counterOrder lists the counters of c: in the engine's order, then any
// name the engine does not list, sorted.
func counterOrder(c bpf.Counters) []bpf.Counter {
	known := bpf.CounterNames()
	var names, extra []bpf.Counter
	for _, name := range known {
		if _, ok := c[name]; ok {
			names = append(names, name)
		}
	}
	for name := range c {
		if !slices.Contains(known, name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	return append(names, extra...)
}
