package scale

import (
	"bufio"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseCounts(t *testing.T) {
	for _, tc := range []struct {
		in       string
		allowMax bool
		want     []int
		err      string // part of the error
	}{
		{in: "1,50,250", want: []int{1, 50, 250}},
		{in: " 1, 1000 ", want: []int{1, 1000}},
		{in: "0,1000,max", allowMax: true, want: []int{0, 1000, Capacity}},
		{in: "max", allowMax: true, want: []int{Capacity}},
		{in: "1,x", err: `item 2 "x" is not a count`},
		{in: "max", err: `item 1 "max" is not a count`},
		{in: "1,-5", err: `item 2 "-5"`},
		{in: "5,3", err: "item 2 (3) is not above"},
		{in: "5,5", err: "item 2 (5) is not above"},
		{in: "max,5", allowMax: true, err: "item 2 (5) is not above"},
		{in: "", err: `item 1 "" is not a count`},
	} {
		got, err := ParseCounts("BENCH_X", tc.in, tc.allowMax)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "BENCH_X") {
				t.Errorf("ParseCounts(%q): %v, want an error naming BENCH_X and %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseCounts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestConfigConnPods(t *testing.T) {
	for _, tc := range []struct {
		pods []int
		want int
		ok   bool
	}{
		{[]int{1, 10, 50, 100, 250, 1000}, 250, true},
		{[]int{1, 50}, 50, true},
		{[]int{300, 1000}, 0, false},
		{[]int{10, 5}, 0, false},
		{[]int{0, 5}, 0, false},
	} {
		c := Config{Pods: tc.pods}
		err := c.validate()
		if (err == nil) != tc.ok || (tc.ok && c.connPods() != tc.want) {
			t.Errorf("pods %v: connPods %d, %v; want %d, ok %v", tc.pods, c.connPods(), err, tc.want, tc.ok)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct{ total, pods int }{{0, 3}, {10, 3}, {32768, 250}, {5, 10}, {7, 1}} {
		got := spread(tc.total, tc.pods)
		sum := 0
		for i, n := range got {
			sum += n
			if i > 0 && (n > got[i-1] || got[0]-n > 1) {
				t.Errorf("spread(%d, %d) = %v: not even, or a later pod holds more", tc.total, tc.pods, got)
			}
		}
		if len(got) != tc.pods || sum != tc.total {
			t.Errorf("spread(%d, %d) = %v: %d pods, %d connections", tc.total, tc.pods, got, len(got), sum)
		}
	}
}

func TestParseProcFiles(t *testing.T) {
	d, err := parseSchedstat("123456789 555 7\n")
	if err != nil || d != 123456789*time.Nanosecond {
		t.Errorf("parseSchedstat: %v, %v", d, err)
	}
	if _, err := parseSchedstat("12 x"); err == nil {
		t.Error("parseSchedstat of two fields: no error")
	}
	m, err := parseStatus("Name:\tx\nVmHWM:\t   40960 kB\nVmRSS:\t   20480 kB\nThreads: 3\n")
	if err != nil || m != (memory{rss: 20, peak: 40}) {
		t.Errorf("parseStatus: %+v, %v", m, err)
	}
	if _, err := parseStatus("VmRSS:\t20480 kB\n"); err == nil {
		t.Error("parseStatus without VmHWM: no error")
	}
	if _, err := parseStatus("VmRSS:\t20 MB\nVmHWM:\t20 kB\n"); err == nil || !strings.Contains(err.Error(), "VmRSS") {
		t.Errorf("parseStatus of MB: %v, want an error naming the line", err)
	}
}

// sample is a run at full scale with chosen figures.
func sample() *Result {
	r := &Result{Capacity: 32768, ConnPods: 250}
	for i := range 1000 {
		r.AddMs = append(r.AddMs, 5+float64(i)/1000)
		r.DelMs = append(r.DelMs, 4)
	}
	r.Steps = []Step{
		{Phase: PhasePods, Pods: 250, Add: &Dist{N: 150, P50: 5, P99: 14}, ScrapeMs: 3},
		{Phase: PhaseConns, Pods: 250, Conns: 32768, Accelerated: 32384, ScrapeMs: 19, ScrapeCPUms: 25, SweepCPUms: 2, Sweep2CPUms: 1,
			RSSMiB: 30, PeakMiB: 31, KernelMiB: 34, Connect: Connect{AccelP50: 105, PlainP50: 100, Ratio: 1.04, Counted: map[string]uint64{"rejected_shared_pool": 200}}},
		{Phase: PhaseMore, Pods: 1000, Conns: 32768, Accelerated: 32384, Add: &Dist{N: 750, P50: 5, P99: 9}},
	}
	return r
}

func TestJudgeFloors(t *testing.T) {
	r := sample()
	r.JudgeFloors()
	want := map[string]bool{
		"ADD p99 under 15 ms at 250 pods": true, "ADD of pod 1000 within 20% of pod 1": true,
		"scrape under 20 ms (wall and CPU) at full maps": false, "sweep pass under 20 ms of CPU at full maps": true,
		"installer RSS under 64 MiB at full maps": true, "new connection at full maps at most 10% over an unattached pod's": true,
	}
	if len(r.Floors) != len(want) {
		t.Fatalf("%d floors, want %d: %+v", len(r.Floors), len(want), r.Floors)
	}
	for _, f := range r.Floors {
		if met, ok := want[f.What]; !ok || !f.Judged || f.Met != met {
			t.Errorf("floor %q: judged %v, met %v (%s); want judged, met %v", f.What, f.Judged, f.Met, f.Figure, met)
		}
	}
	if !strings.Contains(r.FloorsTable(), "counted: rejected_shared_pool 200;") {
		t.Errorf("floors table does not give the counters:\n%s", r.FloorsTable())
	}
	if !strings.Contains(r.FloorsTable(), "**missed** (19.0 ms wall, 25.0 ms of the installer's CPU") {
		t.Errorf("floors table does not give the scrape's figures:\n%s", r.FloorsTable())
	}

	// Maps below 95%, new connections accelerated: the floors at full
	// maps are not judged; ADD growth over 20% is missed.
	r = sample()
	r.Steps[1].Accelerated, r.Steps[2].Accelerated = 20000, 20000
	r.Steps[1].Connect.Counted = map[string]uint64{"connections_accepted": 200}
	for i := 990; i < 1000; i++ {
		r.AddMs[i] = 9
	}
	r.JudgeFloors()
	for _, f := range r.Floors[2:] {
		if f.Judged {
			t.Errorf("floor %q judged below full maps: %s", f.What, f.Figure)
		}
	}
	if f := r.Floors[1]; !f.Judged || f.Met {
		t.Errorf("ADD growth 9 ms against 5 ms: judged %v, met %v (%s)", f.Judged, f.Met, f.Figure)
	}

	// Maps below 95% but the shared pool used up: full.
	r = sample()
	r.Steps[1].Accelerated, r.Steps[2].Accelerated = 20000, 20000
	r.JudgeFloors()
	if f := r.Floors[4]; !f.Judged || !strings.Contains(f.Figure, "(61.0% of the capacity)") {
		t.Errorf("shared pool used up: RSS floor judged %v (%s), want judged at 61.0%% of the capacity", f.Judged, f.Figure)
	}

	// A new connection 20% over, or not measured, misses its floor.
	for _, ratio := range []float64{1.2, 0} {
		r = sample()
		r.Steps[1].Connect.Ratio = ratio
		r.JudgeFloors()
		if f := r.Floors[5]; !f.Judged || f.Met {
			t.Errorf("new connection ratio %v: judged %v, met %v (%s)", ratio, f.Judged, f.Met, f.Figure)
		}
	}
}

func TestEdgesAndTable(t *testing.T) {
	r := sample()
	e := r.Edges()
	for _, s := range []string{"pods 1-10: ADD 5.0 ms", "pods 241-250: ADD 5.2 ms", "pods 991-1000: ADD 6.0 ms, DEL 4.0 ms"} {
		if !strings.Contains(e, s) {
			t.Errorf("Edges() = %q, want %q in it", e, s)
		}
	}
	tab := r.Table()
	if n := strings.Count(tab, "\n"); n != 2+len(r.Steps) {
		t.Errorf("table of %d lines, want %d:\n%s", n, 2+len(r.Steps), tab)
	}
	if !strings.Contains(tab, "| conns | 250 | 32768 | 32384 |") || !strings.Contains(tab, "| 105 / 100 (1.04x) |") {
		t.Errorf("table lacks the full step's figures:\n%s", tab)
	}
}

func TestBlockMedians(t *testing.T) {
	v := make([]float64, 60)
	for i := range v {
		v[i] = float64(i % 25) // 0..24 in each block: median 12
	}
	v[20] = 1000 // an outlier above the median does not move it
	got := blockMedians(v)
	want := [][2]float64{{13, 12}, {38, 12}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("blockMedians = %v, want %v (the last 10 values left out)", got, want)
	}
}

func TestNiceMax(t *testing.T) {
	for in, want := range map[float64]float64{0: 1, 0.7: 0.8, 1: 1, 12: 15, 32768: 40000, 375.9: 400, 1000: 1000} {
		if got := niceMax(in); got != want {
			t.Errorf("niceMax(%v) = %v, want %v", in, got, want)
		}
	}
}

// checkSVG parses an SVG document and counts its elements by name.
func checkSVG(t *testing.T, doc string) map[string]int {
	t.Helper()
	count := map[string]int{}
	d := xml.NewDecoder(strings.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return count
		}
		if err != nil {
			t.Fatalf("SVG does not parse: %v\n%s", err, doc)
		}
		if s, ok := tok.(xml.StartElement); ok {
			count[s.Name.Local]++
		}
	}
}

func TestChartSVG(t *testing.T) {
	c := Chart{Title: "a <b> & c", XLabel: "x", YLabel: "y", Limit: 20, Series: []Series{
		{Name: "one", Points: [][2]float64{{0, 1}, {10, 30}}}, {Name: "two & <three>", Points: [][2]float64{{0, 2}, {10, 3}, {20, 4}}}}}
	n := checkSVG(t, c.SVG())
	if n["polyline"] != 2 || n["circle"] != 5 || n["svg"] != 1 {
		t.Errorf("chart has %d polylines, %d points; want 2 and 5", n["polyline"], n["circle"])
	}
	// Clipped at 10: the axis ends at 10 and the point at 30 is drawn at
	// its top (y 50), as the point at 10 is.
	c.MaxY, c.Limit = 10, 5
	doc := c.SVG()
	if !strings.Contains(doc, ">10</text>") || strings.Contains(doc, ">30</text>") {
		t.Errorf("clipped chart's axis does not end at 10:\n%s", doc)
	}
	if got := strings.Count(doc, `cy="50.0"`); got != 1 {
		t.Errorf("clipped chart: %d points at the top, want 1 (30 clipped to 10)", got)
	}
}

func TestWriteReadJSONAndCharts(t *testing.T) {
	r := sample()
	r.JudgeFloors()
	path := filepath.Join(t.TempDir(), "scale.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("JSON round trip changed the result:\n%+v\n%+v", back, r)
	}
	files, err := r.WriteCharts(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 5 {
		t.Errorf("charts %v, want 5", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := checkSVG(t, string(b)); n["polyline"] == 0 {
			t.Errorf("%s: no curve", f)
		}
	}
}

// TestHolderProtocol drives a holder in this process (no cgroup, no
// namespace: its pure part, the commands and answers).
func TestHolderProtocol(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveHolder(inR, outW); outW.Close() }()
	out := bufio.NewScanner(outR)
	ask := func(cmd string) string {
		t.Helper()
		if cmd != "" {
			if _, err := io.WriteString(inW, cmd+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		if !out.Scan() {
			t.Fatalf("%q: no answer (%v)", cmd, out.Err())
		}
		return out.Text()
	}
	if got := ask(""); got != "ok ready" {
		t.Fatalf("first line %q, want ok ready", got)
	}
	if got := ask("open 20"); got != "ok" {
		t.Errorf("open: %q", got)
	}
	if got := ask("live 2"); got != "ok" {
		t.Errorf("live: %q", got)
	}
	got := strings.Fields(ask("probe 3"))
	if len(got) != 4 || got[0] != "ok" {
		t.Errorf("probe 3: %q, want ok and three times", got)
	}
	for _, bad := range []string{"open", "open -1", "dance 3"} {
		if got := ask(bad); !strings.HasPrefix(got, "err ") {
			t.Errorf("%q: %q, want an error", bad, got)
		}
	}
	inW.Close()
	if err := <-done; err != nil {
		t.Errorf("holder: %v", err)
	}
}
