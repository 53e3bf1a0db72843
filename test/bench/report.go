//go:build meshbench

package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteTable prints which sidecar the modes ran, the figures per mode and,
// below, each mode's ratio to the sidecar mode (for latency: sidecar /
// mode, so >1 is better); then the CNI plugin's timing when it was
// measured.
func WriteTable(w io.Writer, r *Results) error {
	if r.Sidecar != "" {
		if _, err := fmt.Fprintf(w, "sidecars (BENCH_SIDECAR=%s): %s\n\n", r.Sidecar, r.SidecarDesc); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprint(w, cpuNote); err != nil {
		return err
	}
	if err := writeModes(w, r.Modes); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return err
	}
	if err := writeSpread(w, r.Modes, r.Spread, r.Rounds); err != nil {
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

// cpuNote says what the table's fortio and CPU rows are.
const cpuNote = `fortio: HTTP/1.1 through both sidecars, 16 connections, 1 KiB payload; "added" is the mode minus direct
(medians). CPU per request (MiB for iperf3, connection for new connections), over each tool's whole run:
  pods = CPU time charged to the two pods' cgroups (cpu.stat usage_usec: apps, tools and sidecars, with the
         kernel work done in their context); the steadier figure
  node = the whole machine's busy time (/proc/stat user+nice+system+irq+softirq; idle, iowait and steal
         excluded), this benchmark and any other work on the node included
vCPU per 1000 req/s (Istio's unit) = CPU µs per request / 1000, at fortio's fixed 1000 req/s.

`

// present lists the modes of res in table order.
func present(res map[Mode]Result) []Mode {
	var out []Mode
	for _, m := range AllModes {
		if _, ok := res[m]; ok {
			out = append(out, m)
		}
	}
	return out
}

// measured lists the figures that some mode of res has (BENCH_ONLY may
// leave measurements out), in table order.
func measured(res map[Mode]Result) []Figure {
	var out []Figure
	for _, f := range Figures {
		for _, r := range res {
			if _, ok := r[f.Key]; ok {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

func writeModes(w io.Writer, res map[Mode]Result) error {
	modes, figures := present(res), measured(res)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := func(head string, cell func(Mode, Figure) string) {
		fmt.Fprintf(tw, "%s\t", head)
		for _, m := range modes {
			fmt.Fprintf(tw, "%s\t", m)
		}
		fmt.Fprint(tw, "\n")
		for _, f := range figures {
			fmt.Fprintf(tw, "%s\t", f.Label)
			for _, m := range modes {
				fmt.Fprintf(tw, "%s\t", cell(m, f))
			}
			fmt.Fprint(tw, "\n")
		}
	}
	rows("figure", func(m Mode, f Figure) string { return formatFigure(res[m][f.Key]) })
	count := func(label string, scale float64, key string, only func(Result) bool) {
		if !slices.ContainsFunc(modes, func(m Mode) bool { return only(res[m]) }) {
			return // e.g. no mode ran Envoy
		}
		fmt.Fprintf(tw, "%s\t", label)
		for _, m := range modes {
			if only(res[m]) {
				fmt.Fprintf(tw, "%.0f\t", res[m][key]/scale)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprint(tw, "\n")
	}
	always := func(Result) bool { return true }
	envoy := func(r Result) bool { _, ok := r[keyInboundConns]; return ok }
	count("redirected MiB", 1<<20, keyRedirected, always)
	count("flow control held", 1, keyFCHeld, always)
	count("flow control resumed", 1, keyFCResumed, always)
	count("server sidecar mTLS handshakes", 1, keyHandshakes, envoy)
	count("server sidecar inbound connections", 1, keyInboundConns, envoy)
	fmt.Fprint(tw, "\n")
	rows("ratio to sidecar (>1 is better)", func(m Mode, f Figure) string {
		if r, ok := Ratio(res, m, f); ok {
			return fmt.Sprintf("%.2fx", r)
		}
		return "-"
	})
	return tw.Flush()
}

// Ratio is mode's figure against the sidecar mode's, oriented so that
// above 1 is better (sidecar / mode for latencies).
func Ratio(res map[Mode]Result, m Mode, f Figure) (float64, bool) {
	a, b := res[m][f.Key], res[Sidecar][f.Key]
	if f.Lower {
		a, b = b, a
	}
	if a <= 0 || b <= 0 { // an added latency within the noise may be negative
		return 0, false
	}
	return a / b, true
}

func formatFigure(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
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

// modeColors are the chart's bar colors, in Modes order.
var modeColors = map[Mode]string{Direct: "#9e9e9e", Sidecar: "#616161", Annotation: "#64b5f6", AnnotationOneWay: "#b3e5fc",
	Accel: "#1e88e5", AccelAll: "#0d47a1", SidecarHop: "#43a047", SidecarHopOneWay: "#a5d6a7", ClientOnly: "#fb8c00"}

// WriteChart writes an SVG bar chart of the figures: one group of bars per
// figure, one bar per mode, each bar the mode's ratio to the sidecar mode
// (above 1 is better; latencies inverted), with a line at 1.
func WriteChart(path string, r *Results) error {
	res := r.Modes
	modes, figures := present(res), measured(res)
	const (
		barW, gap, top, plotH, labelH, left = 9, 18, 60, 320, 170, 50
	)
	groupW := barW*len(modes) + gap
	width := left + groupW*len(figures) + 20
	height := top + plotH + labelH
	maxR := 2.0
	for _, f := range figures {
		for _, m := range modes {
			if r, ok := Ratio(res, m, f); ok && r > maxR {
				maxR = r
			}
		}
	}
	maxR = float64(int(maxR*2+1)) / 2 // up to the next half
	y := func(r float64) float64 { return top + plotH - r/maxR*plotH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	sidecars := ""
	if r.Sidecar != "" {
		sidecars = "; sidecars: " + r.SidecarDesc
	}
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">mesh-accel: each mode against the sidecars (ratio, above 1 is better; latencies inverted)%s</text>`+"\n",
		left, html.EscapeString(sidecars))
	for i, m := range modes {
		x := left + i*130
		fmt.Fprintf(&b, `<rect x="%d" y="30" width="10" height="10" fill="%s"/><text x="%d" y="39">%s</text>`+"\n", x, modeColors[m], x+14, m)
	}
	for r := 0.0; r <= maxR+1e-9; r += 0.5 {
		stroke := "#e0e0e0"
		if r == 1 {
			stroke = "#d32f2f"
		}
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s"/><text x="%d" y="%.1f" text-anchor="end">%.1f</text>`+"\n",
			left, width-20, y(r), y(r), stroke, left-4, y(r)+4, r)
	}
	for i, f := range figures {
		gx := left + i*groupW + gap/2
		for j, m := range modes {
			r, ok := Ratio(res, m, f)
			if !ok {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s, %s: %.2fx</title></rect>`+"\n",
				gx+j*barW, y(r), barW-1, y(0)-y(r), modeColors[m], f.Label, m, r)
		}
		lx := gx + barW*len(modes)/2
		fmt.Fprintf(&b, `<text transform="translate(%d,%d) rotate(-55)" text-anchor="end">%s</text>`+"\n", lx, top+plotH+12, f.Label)
	}
	b.WriteString("</svg>\n")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	return os.Rename(tmp, path)
}
