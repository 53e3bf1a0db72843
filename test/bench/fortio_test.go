//go:build meshbench

package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"regexp"
	"strings"
	"testing"
)

// testdata/fortio-load.json is the output of `fortio load -qps 1000 -c 16
// -t 1s -payload-size 1024 -p 50,90,99,99.9 -json -` (fortio 1.68.2, its
// payload blanked and its histogram shortened).
func TestParseFortio(t *testing.T) {
	out, err := os.ReadFile("testdata/fortio-load.json")
	if err != nil {
		t.Fatal(err)
	}
	run, err := parseFortio(out)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(run.QPS-998.131) > 0.001 {
		t.Errorf("QPS %v, want 998.131", run.QPS)
	}
	if run.Requests != 992+16 { // the warm-up: one request per connection
		t.Errorf("requests %v, want 1008", run.Requests)
	}
	for p, want := range map[float64]float64{50: 0.5758, 90: 1.0658, 99: 2.7807, 99.9: 3.6939} {
		if got := run.PctMS[p]; math.Abs(got-want) > 0.0001 {
			t.Errorf("P%v = %v ms, want %v", p, got, want)
		}
	}
}

func TestParseFortioErrors(t *testing.T) {
	good, err := os.ReadFile("testdata/fortio-load.json")
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, _ := json.Marshal(m)
		return b
	}
	for name, tc := range map[string]struct {
		out  []byte
		want string
	}{
		"not JSON": {[]byte("Fortio 1.68.2 running at 1000 queries per second"), "parse fortio"},
		"503s": {edit(func(m map[string]any) { m["RetCodes"] = map[string]any{"200": 900, "503": 92} }),
			"92 answers 503"},
		"connection errors": {edit(func(m map[string]any) { m["RetCodes"] = map[string]any{"-1": 992} }),
			"992 answers -1"},
		"no requests": {edit(func(m map[string]any) { m["DurationHistogram"].(map[string]any)["Count"] = 0 }),
			"no HTTP requests"},
		"no P99.9": {edit(func(m map[string]any) {
			h := m["DurationHistogram"].(map[string]any)
			h["Percentiles"] = h["Percentiles"].([]any)[:3]
		}), "no P99.9"},
	} {
		_, err := parseFortio(tc.out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

func TestDeriveFortio(t *testing.T) {
	res := map[Mode]Result{
		Direct:  {"fortio_p50_ms": 0.2, "fortio_p90_ms": 0.3, "fortio_p99_ms": 0.5, "fortio_p999_ms": 1, "fortio_cpu_pods_us_per_req": 60, "fortio_cpu_node_us_per_req": 90},
		Sidecar: {"fortio_p50_ms": 0.7, "fortio_p90_ms": 1.1, "fortio_p99_ms": 2.5, "fortio_p999_ms": 4, "fortio_cpu_pods_us_per_req": 460, "fortio_cpu_node_us_per_req": 600},
	}
	deriveFortio(res)
	for key, want := range map[string]float64{
		"fortio_added_p50_ms": 0.5, "fortio_added_p90_ms": 0.8, "fortio_added_p99_ms": 2, "fortio_added_p999_ms": 3,
		keyFortioPodsVCPU: 0.46, keyFortioNodeVCPU: 0.6, keyFortioAddedVCPU: 0.4,
	} {
		if got := res[Sidecar][key]; math.Abs(got-want) > 1e-9 {
			t.Errorf("sidecar %s = %v, want %v", key, got, want)
		}
	}
	if got := res[Direct]["fortio_added_p90_ms"]; got != 0 {
		t.Errorf("direct added P90 = %v, want 0", got)
	}

	// Without direct, nothing is added; vCPU is still derived.
	res = map[Mode]Result{Sidecar: {"fortio_p90_ms": 1.1, "fortio_cpu_pods_us_per_req": 460}}
	deriveFortio(res)
	if _, ok := res[Sidecar]["fortio_added_p90_ms"]; ok {
		t.Error("added P90 without direct")
	}
	if got := res[Sidecar][keyFortioPodsVCPU]; math.Abs(got-0.46) > 1e-9 {
		t.Errorf("vCPU per 1000 req/s = %v, want 0.46", got)
	}
}

// Every figure has one key, fortio's lead, and the JSON of a mode follows
// the table's order.
func TestFiguresAndJSONOrder(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Figures {
		if seen[f.Key] {
			t.Errorf("figure key %s twice", f.Key)
		}
		seen[f.Key] = true
	}
	if Figures[0].Key != "fortio_added_p50_ms" || Figures[1].Key != "fortio_added_p90_ms" {
		t.Errorf("first figures %s, %s; want fortio's added latency", Figures[0].Key, Figures[1].Key)
	}
	if measurements[0].name != "fortio 1000/s" || measurements[0].cpu != "fortio" {
		t.Errorf("first measurement %q (cpu %q), want fortio 1000/s", measurements[0].name, measurements[0].cpu)
	}
	for _, m := range measurements {
		pods, node := cpuKeys(m.cpu, m.unit)
		if !seen[pods] || !seen[node] {
			t.Errorf("measurement %s: no figures %s, %s", m.name, pods, node)
		}
	}
	b, err := json.Marshal(Result{"zz_count": 1, "p50_us": 40, "fortio_added_p90_ms": 0.8})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"fortio_added_p90_ms":0.8,"p50_us":40,"zz_count":1}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back Result
	if err := json.Unmarshal(b, &back); err != nil || back["p50_us"] != 40 {
		t.Errorf("round trip: %v, %v", back, err)
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, b, "", "  "); err != nil {
		t.Error(err)
	}
}

// BENCH_ONLY picks measurements by name: fortio's binary is built and its
// server started only when one of fortio's measurements is picked.
func TestWantsFortio(t *testing.T) {
	for only, want := range map[string]bool{"": true, "fortio": true, "fortio max": true, "^fortio 1000/s$": true,
		"connections|sockperf 64 B": false, "capture": false} {
		cfg := Config{}
		if only != "" {
			cfg.Only = regexp.MustCompile(only)
		}
		if got := wantsFortio(cfg); got != want {
			t.Errorf("BENCH_ONLY=%q: wantsFortio %v, want %v", only, got, want)
		}
	}
}
