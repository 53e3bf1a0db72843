package installer

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/manifests/monitoring"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// An installer on real node state exports every metric that the alerts
// and the dashboard (manifests/monitoring) query, and the metrics of
// testdata/metrics.txt: the fake engine of the other tests shows nothing
// the real one lacks. Metrics of other exporters are listed in
// monitoring.OtherExporters.
func TestMetricsOfRunningInstaller(t *testing.T) {
	h := newBPFHost(t)
	// The failure metric has a series once the plugin counted a failure.
	writeFailures(t, h.cfg.StateDir, plugin.Failures{plugin.ReasonAPI: {Count: 1}})
	r := h.start(t, Deps{Engine: BPFEngine{}})
	r.waitReady(t)

	families := scrape(t, r)
	exprs, err := monitoring.Expressions()
	if err != nil {
		t.Fatal(err)
	}
	for where, e := range exprs {
		names, err := monitoring.MetricNames(e)
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		for _, n := range names {
			if families[n] == nil && !monitoring.OtherExporters[n] && !histogramSeries(families, n) {
				t.Errorf("%s queries %s, which the installer does not export", where, n)
			}
		}
	}
	for _, tc := range []struct {
		name string
		want float64
	}{{MetricEnabled, 1}, {MetricReady, 1}, {MetricNodeActive, 1}, {MetricPodsAttached, 0}} {
		if got := valueOf(families[tc.name], ""); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := valueOf(families[MetricMapMaxEntries], "sock_proxy_map"); got != bpf.DefaultMapSize {
		t.Errorf("%s{map=\"sock_proxy_map\"} = %v, want %d", MetricMapMaxEntries, got, bpf.DefaultMapSize)
	}
	// The default fair share: 128 entries a pod, for 256 pods, the other
	// half of the maps shared.
	for _, tc := range []struct {
		name string
		want float64
	}{{MetricGuaranteedShare, 128}, {MetricGuaranteedPods, 256}, {MetricSharedPool, 32768}, {MetricSharedPoolInUse, 0}} {
		if got := valueOf(families[tc.name], ""); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, got, tc.want)
		}
	}

	golden, err := os.ReadFile(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for _, line := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
		name := strings.Fields(line)[0]
		// Sockets of an older layout exist only during an upgrade; the
		// per-pod metrics have a series per attached pod (none here).
		perPod := name == MetricPodMapEntries || name == MetricPodQuota
		if families[name] == nil && name != MetricOlderStateSockets && !perPod {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the running installer lacks %v of testdata/metrics.txt", missing)
	}
}

// histogramSeries reports whether name is a series of an exported histogram
// (its _bucket, _sum or _count).
func histogramSeries(families map[string]*dto.MetricFamily, name string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if f := families[base]; f != nil && f.GetType() == dto.MetricType_HISTOGRAM {
				return true
			}
		}
	}
	return false
}
