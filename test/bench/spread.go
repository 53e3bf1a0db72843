//go:build meshbench

package bench

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"text/tabwriter"
)

// Range is the lowest and highest of a figure's per-round values.
type Range struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// Spread is, per mode and figure, the range of the rounds' values behind
// the median: the noise of the run, against which a ratio is read.
type Spread map[Mode]map[string]Range

// spreadOf gives the range over rounds of every figure of samples (one
// Result per round and mode, as measureRounds returns them). Derived
// figures (fortio's added latency, vCPU) are derived per round first, from
// the same round's direct mode: rounds are interleaved, so a round's modes
// share the machine's state. Counts summed over rounds have no spread.
func spreadOf(samples map[Mode][]Result) Spread {
	rounds := 0
	for _, rs := range samples {
		rounds = max(rounds, len(rs))
	}
	out := Spread{}
	for r := range rounds {
		round := map[Mode]Result{}
		for m, rs := range samples {
			if r < len(rs) {
				round[m] = maps.Clone(rs[r])
			}
		}
		deriveFortio(round)
		for m, res := range round {
			if out[m] == nil {
				out[m] = map[string]Range{}
			}
			for k, v := range res {
				if slices.Contains(summedKeys, k) {
					continue
				}
				g, ok := out[m][k]
				if !ok {
					g = Range{Min: v, Max: v}
				}
				out[m][k] = Range{Min: math.Min(g.Min, v), Max: math.Max(g.Max, v)}
			}
		}
	}
	return out
}

// Percent is the range's width as a share of median, in percent (0 when
// the median is 0).
func (g Range) Percent(median float64) float64 {
	if median == 0 {
		return 0
	}
	return (g.Max - g.Min) / math.Abs(median) * 100
}

// writeSpread prints, per figure and mode, the range of the rounds'
// values as a share of the median ((max-min)/median): a ratio to sidecar
// smaller than both modes' spreads is within the run's noise.
func writeSpread(w io.Writer, res map[Mode]Result, sp Spread, rounds int) error {
	if len(sp) == 0 || rounds < 2 {
		return nil
	}
	modes, figures := present(res), measured(res)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "spread over %d rounds, (max-min)/median\t", rounds)
	for _, m := range modes {
		fmt.Fprintf(tw, "%s\t", m)
	}
	fmt.Fprint(tw, "\n")
	for _, f := range figures {
		fmt.Fprintf(tw, "%s\t", f.Label)
		for _, m := range modes {
			g, ok := sp[m][f.Key]
			if !ok || res[m][f.Key] == 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%.0f%%\t", g.Percent(res[m][f.Key]))
		}
		fmt.Fprint(tw, "\n")
	}
	return tw.Flush()
}
