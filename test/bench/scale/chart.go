package scale

import (
	"fmt"
	"html"
	"math"
	"path/filepath"
	"strings"
)

// Series is one curve of a chart.
type Series struct {
	Name   string
	Points [][2]float64 // x, y
	Faint  bool         // drawn thin and light, behind a summary of it
}

// Chart is a line chart.
type Chart struct {
	Title, XLabel, YLabel string
	Series                []Series
	Limit                 float64 // a floor drawn as a red line (0: none)
	MaxY                  float64 // the y axis's end, values above drawn at it (0: the largest value)
}

var seriesColors = []string{"#1e88e5", "#fb8c00", "#43a047", "#8e24aa", "#616161", "#e53935"}

// SVG renders the chart: linear axes from 0, a tick line per step of the
// scale, a dot per point.
func (c Chart) SVG() string {
	const left, right, top, plotW, plotH, bottom = 70, 20, 50, 600, 300, 50
	maxX, maxY := 0.0, c.Limit
	for _, s := range c.Series {
		for _, p := range s.Points {
			maxX, maxY = math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	xs, ys := niceMax(maxX), niceMax(maxY*1.05)
	if c.MaxY > 0 {
		ys = niceMax(c.MaxY)
	}
	x := func(v float64) float64 { return left + v/xs*plotW }
	y := func(v float64) float64 { return top + plotH - min(v, ys)/ys*plotH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n",
		left+plotW+right, top+plotH+bottom)
	b.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="14">%s</text>`+"\n", left, html.EscapeString(c.Title))
	for i := 0; i <= 5; i++ {
		vx, vy := xs*float64(i)/5, ys*float64(i)/5
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e0e0e0"/><text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n",
			left, left+plotW, y(vy), y(vy), left-4, y(vy)+4, num(vy))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#e0e0e0"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n",
			x(vx), x(vx), top, top+plotH, x(vx), top+plotH+14, num(vx))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", left+plotW/2, top+plotH+34, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(14,%d) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotH/2, html.EscapeString(c.YLabel))
	if c.Limit > 0 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#d32f2f" stroke-dasharray="4 3"/>`+
			`<text x="%d" y="%.1f" text-anchor="end" fill="#d32f2f">floor %s</text>`+"\n",
			left, left+plotW, y(c.Limit), y(c.Limit), left+plotW, y(c.Limit)-3, num(c.Limit))
	}
	lx := left // the legend's next entry, about 6 px per character
	for i, s := range c.Series {
		color := seriesColors[i%len(seriesColors)]
		fmt.Fprintf(&b, `<rect x="%d" y="26" width="10" height="10" fill="%s"/><text x="%d" y="35">%s</text>`+"\n",
			lx, color, lx+14, html.EscapeString(s.Name))
		lx += 14 + 6*len(s.Name) + 20
		var pts []string
		for _, p := range s.Points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p[0]), y(p[1])))
		}
		width, opacity := 1.5, 1.0
		if s.Faint {
			width, opacity = 0.7, 0.45
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%.1f" stroke-opacity="%.2f" points="%s"/>`+"\n",
			color, width, opacity, strings.Join(pts, " "))
		if len(s.Points) <= 50 {
			for _, p := range s.Points {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
					x(p[0]), y(p[1]), color, html.EscapeString(s.Name), num(p[0]), num(p[1]))
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceMax rounds v up to a round multiple of a power of ten (1 for 0).
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// num formats an axis value without useless digits.
func num(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// Charts are the run's curves by file name suffix: scale-SUFFIX.svg.
func (r *Result) Charts() map[string]Chart {
	var add, del []([2]float64)
	for i, v := range r.AddMs {
		add = append(add, [2]float64{float64(i + 1), v})
	}
	for i, v := range r.DelMs {
		del = append(del, [2]float64{float64(i + 1), v})
	}
	conns := r.phase(PhaseConns)
	pods, full := r.phase(PhasePods), r.phase(PhaseMore)
	if len(conns) > 0 && len(full) > 0 {
		full = append([]Step{conns[len(conns)-1]}, full...)
	}
	podsOf := func(s Step) float64 { return float64(s.Pods) }
	sweepCPU := func(s Step) float64 { return s.SweepCPUms }
	scrapeCPU := func(s Step) float64 { return s.ScrapeCPUms }
	bypods := append(curves(pods, podsOf, []figure{{"sweep, 0 connections", sweepCPU}, {"scrape, 0 connections", scrapeCPU}}),
		curves(full, podsOf, []figure{{"sweep, maps full", sweepCPU}, {"scrape, maps full", scrapeCPU}})...)
	return map[string]Chart{
		"add": {Title: fmt.Sprintf("CNI ADD of the Nth pod, DEL with N pods attached (clipped at %.0f ms)", 2*MaxAddP99ms),
			XLabel: "pod", YLabel: "ms", Limit: MaxAddP99ms, MaxY: 2 * MaxAddP99ms,
			Series: []Series{{Name: "ADD", Points: add, Faint: true}, {Name: "DEL", Points: del, Faint: true},
				{Name: fmt.Sprintf("ADD, median of %d", block), Points: blockMedians(r.AddMs)},
				{Name: fmt.Sprintf("DEL, median of %d", block), Points: blockMedians(r.DelMs)}}},
		"pods": {Title: "CPU of one sweep pass and one scrape (installer), by pods attached", XLabel: "pods", YLabel: "ms CPU",
			Series: bypods, Limit: MaxScrapeMs},
		"conns": {Title: fmt.Sprintf("One sweep pass and one scrape, by connections held (%d pods)", r.ConnPods), XLabel: "connections held",
			YLabel: "ms", Series: curves(conns, connsOf, sweepScrape), Limit: MaxScrapeMs},
		"memory": {Title: fmt.Sprintf("Installer RSS and the kernel memory of the node state's maps (%d pods)", r.ConnPods),
			XLabel: "connections held", YLabel: "MiB", Limit: MaxRSSMiB,
			Series: curves(conns, connsOf, []figure{{"installer RSS", func(s Step) float64 { return s.RSSMiB }},
				{"maps (memlock)", func(s Step) float64 { return s.KernelMiB }}})},
		"connect": {Title: "A new connection (connect to first byte's echo) in pod 1 against an unattached pod", XLabel: "connections held",
			YLabel: "ratio of p50s (median of rounds)", Limit: MaxConnectRatio,
			Series: curves(conns, connsOf, []figure{{"attached / unattached", func(s Step) float64 { return s.Connect.Ratio }}})},
	}
}

type figure struct {
	name string
	of   func(Step) float64
}

var sweepScrape = []figure{
	{"sweep wall", func(s Step) float64 { return s.SweepMs }}, {"sweep CPU", func(s Step) float64 { return s.SweepCPUms }},
	{"scrape wall", func(s Step) float64 { return s.ScrapeMs }}, {"scrape CPU (installer)", func(s Step) float64 { return s.ScrapeCPUms }},
}

func connsOf(s Step) float64 { return float64(s.Conns) }

func curves(steps []Step, x func(Step) float64, figs []figure) []Series {
	out := make([]Series, len(figs))
	for i, f := range figs {
		out[i].Name = f.name
		for _, s := range steps {
			out[i].Points = append(out[i].Points, [2]float64{x(s), f.of(s)})
		}
	}
	return out
}

func (r *Result) phase(p string) []Step {
	var out []Step
	for _, s := range r.Steps {
		if s.Phase == p {
			out = append(out, s)
		}
	}
	return out
}

// WriteCharts writes the charts beside the JSON at jsonPath:
// DIR/scale-SUFFIX.svg for a JSON named DIR/scale.json.
func (r *Result) WriteCharts(jsonPath string) ([]string, error) {
	base := strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath))
	var out []string
	for suffix, c := range r.Charts() {
		p := base + "-" + suffix + ".svg"
		if err := writeAtomic(p, []byte(c.SVG())); err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// block is how many pods each point of the ADD and DEL medians stands for.
const block = 25

// blockMedians is the median of each block of v (pods 1-25, 26-50, ...),
// at the block's middle; a last, shorter block is left out.
func blockMedians(v []float64) [][2]float64 {
	var out [][2]float64
	for i := 0; i+block <= len(v); i += block {
		out = append(out, [2]float64{float64(i) + float64(block+1)/2, percentile(v[i:i+block], 50)})
	}
	return out
}
