package scale

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// Result is what a run measured.
type Result struct {
	Date      string    `json:"date"`
	Kernel    string    `json:"kernel"`
	CPUs      int       `json:"cpus"`
	Capacity  int       `json:"capacity_conns"` // connections the pair map holds
	ConnPods  int       `json:"conn_pods"`      // pods that held the connections
	PodSteps  []int     `json:"pod_steps"`      // Config.Pods
	ConnSteps []int     `json:"conn_steps"`     // Config.Conns, Capacity resolved
	Probes    int       `json:"probes"`         // new connections timed per step and pod
	Live      int       `json:"live"`           // live connections in pod 1 and in the unattached pod
	LoadStart string    `json:"loadavg_start"`  // /proc/loadavg: how busy the machine was
	LoadEnd   string    `json:"loadavg_end"`
	Steps     []Step    `json:"steps"`
	AddMs     []float64 `json:"add_ms"` // ADD of pod i+1, in order
	DelMs     []float64 `json:"del_ms"` // DEL of pod i+1 (deleted last first)
	Floors    []Floor   `json:"floors"`
}

// Phases of a step.
const (
	PhasePods  = "pods"  // pods added, no connection
	PhaseConns = "conns" // connections opened at ConnPods pods
	PhaseMore  = "more"  // pods added beyond MaxConnPods, the maps as full as the last conns step left them
)

// Step is what one step measured.
type Step struct {
	Phase       string             `json:"phase"`
	Pods        int                `json:"pods"`
	Conns       int                `json:"conns"`              // connections held open
	Accelerated int                `json:"accelerated"`        // pairs in the pair map (its entries / 2)
	Maps        []MapFill          `json:"maps"`               // fill of every connection map
	Add         *Dist              `json:"add_ms,omitempty"`   // ADDs that brought the pods to this step
	Del         *Dist              `json:"del_ms,omitempty"`   // DELs from this step's count down to the previous step's
	SweepMs     float64            `json:"sweep_ms"`           // first pass after the step: wall
	SweepCPUms  float64            `json:"sweep_cpu_ms"`       // and CPU
	Sweep2Ms    float64            `json:"sweep_idle_ms"`      // the next pass, nothing changed: wall
	Sweep2CPUms float64            `json:"sweep_idle_cpu_ms"`  // and CPU
	CycleMs     float64            `json:"sweep_cycle_ms"`     // a whole sweep cycle (every entry): wall
	CycleCPUms  float64            `json:"sweep_cycle_cpu_ms"` // and CPU
	ScrapeMs    float64            `json:"scrape_ms"`          // median of 3 scrapes: wall
	ScrapeCPUms float64            `json:"scrape_cpu_ms"`      // the installer's CPU, median of 3
	ScrapeBytes int                `json:"scrape_bytes"`       // size of /metrics
	RSSMiB      float64            `json:"installer_rss_mib"`  // VmRSS after the scrapes
	PeakMiB     float64            `json:"installer_peak_mib"` // VmHWM
	KernelMiB   float64            `json:"kernel_mib"`         // memlock of the state's maps
	KernelMaps  map[string]float64 `json:"kernel_maps_mib"`    // each map's memlock
	Connect     Connect            `json:"connect"`            // a new connection's cost
}

// MapFill is one map's entries and capacity.
type MapFill struct {
	Name    string `json:"name"`
	Entries int    `json:"entries"`
	Max     uint32 `json:"max"`
}

// Dist is the distribution of some timings in milliseconds.
type Dist struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
}

func dist(v []float64) *Dist {
	if len(v) == 0 {
		return nil
	}
	return &Dist{N: len(v), P50: percentile(v, 50), P99: percentile(v, 99)}
}

// Connect is the time from connect to the first byte's echo of new
// connections, in microseconds, in an attached pod holding its share of
// the connections (Accel) and in a pod that is not attached (Plain),
// interleaved in rounds; Ratio compares them round by round; Counted is what the data path's counters said of the
// attached pod's probes (their increase, by counter name, zeros left out).
type Connect struct {
	AccelP50 float64           `json:"accel_p50_us"`
	AccelP99 float64           `json:"accel_p99_us"`
	PlainP50 float64           `json:"plain_p50_us"`
	PlainP99 float64           `json:"plain_p99_us"`
	Ratio    float64           `json:"ratio"` // median over the rounds of attached p50 / plain p50
	Counted  map[string]uint64 `json:"counted,omitempty"`
}

// percentile is the p-th percentile (nearest rank) of v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Floor is one of the floors, judged on a run.
type Floor struct {
	What   string `json:"what"`
	Figure string `json:"figure"` // what was measured, or why it was not
	Met    bool   `json:"met"`
	Judged bool   `json:"judged"` // false: the run did not reach the scale the floor needs
}

// Floors of issue 22.
const (
	MaxAddP99ms     = 15.0 // ADD p99 at 250 pods
	MaxAddGrowth    = 1.2  // ADD of the last pods (1000) against the first
	MaxScrapeMs     = 20.0 // wall and CPU, at full maps
	MaxSweepCPUms   = 20.0 // each pass, at full maps
	MaxRSSMiB       = 64.0 // installer, at full maps
	MaxConnectRatio = 1.10 // new connection at full maps against an unattached pod
	edge            = 10   // ADDs whose median is "pod 1" and "pod N"
)

// WriteJSON writes r to path atomically.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(path, append(b, '\n'))
}

func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ReadJSON reads a result written by WriteJSON.
func ReadJSON(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// Table renders the steps as a Markdown table.
func (r *Result) Table() string {
	var b strings.Builder
	b.WriteString("| step | pods | conns | accelerated | ADD p50/p99 ms | DEL p50/p99 ms | sweep pass ms (CPU) | next pass ms (CPU) | whole cycle ms (CPU) | scrape ms (CPU) | installer RSS MiB | kernel MiB | new conn µs p50 attached / plain (ratio) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	d := func(x *Dist) string {
		if x == nil {
			return ""
		}
		return fmt.Sprintf("%.1f / %.1f", x.P50, x.P99)
	}
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | %.1f | %.1f | %.0f / %.0f (%.2fx) |\n",
			s.Phase, s.Pods, s.Conns, s.Accelerated, d(s.Add), d(s.Del), s.SweepMs, s.SweepCPUms, s.Sweep2Ms, s.Sweep2CPUms, s.CycleMs, s.CycleCPUms,
			s.ScrapeMs, s.ScrapeCPUms, s.RSSMiB, s.KernelMiB, s.Connect.AccelP50, s.Connect.PlainP50, s.Connect.Ratio)
	}
	return b.String()
}

// FloorsTable renders the floors as a Markdown list.
func (r *Result) FloorsTable() string {
	var b strings.Builder
	for _, f := range r.Floors {
		v := "missed"
		switch {
		case !f.Judged:
			v = "not judged"
		case f.Met:
			v = "met"
		}
		fmt.Fprintf(&b, "- %s: **%s** (%s)\n", f.What, v, f.Figure)
	}
	return b.String()
}

// Edges compares the ADD and DEL of the first pods, of the ConnPods-th and
// of the last: the medians of [edge] timings ending at each.
func (r *Result) Edges() string {
	var parts []string
	seen := map[int]bool{}
	for _, n := range []int{edge, r.ConnPods, len(r.AddMs)} {
		if n < edge || n > len(r.AddMs) || n > len(r.DelMs) || seen[n] {
			continue
		}
		seen[n] = true
		parts = append(parts, fmt.Sprintf("pods %d-%d: ADD %.1f ms, DEL %.1f ms", n-edge+1, n,
			percentile(r.AddMs[n-edge:n], 50), percentile(r.DelMs[n-edge:n], 50)))
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("Median of %d: %s.\n", edge, strings.Join(parts, "; "))
}

// countedString lists the counts by name: "name n, name n".
func (c Connect) countedString() string {
	names := make([]string, 0, len(c.Counted))
	for name := range c.Counted {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, name := range names {
		parts[i] = fmt.Sprintf("%s %d", name, c.Counted[name])
	}
	return strings.Join(parts, ", ")
}
