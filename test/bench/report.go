package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
)

// column is one figure of the table.
type column struct {
	head   string
	get    func(Result) float64
	format string
	lower  bool // lower is better (latency)
}

var columns = []column{
	{"rr64/s", func(r Result) float64 { return r.RR64 }, "%.0f", false},
	{"rr4k/s", func(r Result) float64 { return r.RR4K }, "%.0f", false},
	{"rr64x8/s", func(r Result) float64 { return r.RR64x8 }, "%.0f", false},
	{"p50 us", func(r Result) float64 { return r.P50us }, "%.1f", true},
	{"p99 us", func(r Result) float64 { return r.P99us }, "%.1f", true},
	{"bulk Gbit/s", func(r Result) float64 { return r.BulkGbit }, "%.2f", false},
	{"conn/s", func(r Result) float64 { return r.ConnPerS }, "%.0f", false},
}

// WriteTable prints the figures per mode and, below, each mode's ratio to
// the sidecar mode (for latency: sidecar / mode, so >1 is better); then
// the CNI plugin's timing when it was measured.
func WriteTable(w io.Writer, r *Results) error {
	if err := writeModes(w, r.Modes); err != nil {
		return err
	}
	if c := r.Capture; c != nil && c.NoCapture > 0 {
		if _, err := fmt.Fprintf(w, "\ncapture (accel-all, 64 B rr/s): built without %.0f, compiled in and idle %.0f (%.2fx), capturing every message %.0f (%.2fx); %d events, %d dropped\n",
			c.NoCapture, c.Idle, c.Idle/c.NoCapture, c.Capturing, c.Capturing/c.NoCapture, c.Events, c.Dropped); err != nil {
			return err
		}
	}
	if c := r.CNI; c != nil {
		floors := "within the floors"
		if err := c.CheckFloors(); err != nil {
			floors = "OVER THE FLOORS: " + err.Error()
		}
		_, err := fmt.Fprintf(w, "\nCNI plugin, %d pods: ADD p50 %.1f ms, p99 %.1f ms, first %.1f ms, last %.1f ms; DEL p50 %.1f ms, p99 %.1f ms (%s)\n",
			c.Pods, c.AddP50, c.AddP99, c.AddFirst, c.AddLast, c.DelP50, c.DelP99, floors)
		return err
	}
	return nil
}

func writeModes(w io.Writer, res map[Mode]Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "mode\t")
	for _, c := range columns {
		fmt.Fprintf(tw, "%s\t", c.head)
	}
	fmt.Fprint(tw, "redirected MiB\t\n")
	for _, m := range Modes {
		fmt.Fprintf(tw, "%s\t", m)
		for _, c := range columns {
			fmt.Fprintf(tw, c.format+"\t", c.get(res[m]))
		}
		fmt.Fprintf(tw, "%.0f\t\n", float64(res[m].Redirected)/(1<<20))
	}
	base := res[Sidecar]
	for _, m := range Modes {
		if m == Sidecar {
			continue
		}
		fmt.Fprintf(tw, "%s/sidecar\t", m)
		for _, c := range columns {
			a, b := c.get(res[m]), c.get(base)
			if c.lower {
				a, b = b, a
			}
			if b == 0 {
				fmt.Fprint(tw, "-\t")
				continue
			}
			fmt.Fprintf(tw, "%.2fx\t", a/b)
		}
		fmt.Fprint(tw, "\t\n")
	}
	return tw.Flush()
}

// WriteJSON writes v (the [Results]: an object keyed by mode, plus "cni")
// as indented JSON, atomically.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
