package installer

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"
	"github.com/mesh-accel/mesh-accel/installer/metrics"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// On a node that cannot run the data path (the node state is never open)
// the engine's metrics are there, as 0: a rate or a sum over nodes does
// not lose the node.
func TestMetricsWithoutNodeState(t *testing.T) {
	h := newHost(t)
	eng := newStatusEngine(t)
	eng.kernelErr = errors.New("no BPF")
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	families := scrape(t, r)
	for name, cm := range metrics.CounterMetrics() {
		if got := valueOf(families[cm.Metric], cm.Reason); got != 0 {
			t.Errorf("counter %s: %s{reason=%q} = %v, want 0", name, cm.Metric, cm.Reason, got)
		}
	}
	for _, name := range bpf.MapFillNames() {
		if got := valueOf(families[MetricMapEntries], name); got != 0 {
			t.Errorf("%s{map=%q} = %v, want 0", MetricMapEntries, name, got)
		}
	}
	for _, tc := range []struct {
		name string
		want float64
	}{{MetricPodsAttached, 0}, {MetricEnabled, 0}, {MetricDataPathSkewed, 0}, {MetricNodeActive, 0}, {MetricReady, 1}} {
		if got := valueOf(families[tc.name], ""); got != tc.want {
			t.Errorf("%s = %v on an inactive node, want %v", tc.name, got, tc.want)
		}
	}
}

// mesh_accel_ready follows /readyz: 0 while the primary CNI config is
// missing, 1 once the entry is in place.
func TestReadyMetric(t *testing.T) {
	h := newHost(t)
	r := h.start(t, Deps{Engine: newStatusEngine(t)})
	waitFor(t, "/readyz answering", func() bool { c, _ := r.get(t, PathReady); return c != 0 })
	if got := metricValue(t, r, MetricReady, ""); got != 0 {
		t.Errorf("%s = %v without a primary CNI config, want 0", MetricReady, got)
	}
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	r.waitReady(t)
	if got := metricValue(t, r, MetricReady, ""); got != 1 {
		t.Errorf("%s = %v when ready, want 1", MetricReady, got)
	}
}

// The metric names follow the Prometheus conventions (promlint, as
// testutil.GatherAndLint runs it, whose package needs a module that
// go.mod lacks): zero problems over the whole registry.
func TestMetricsLint(t *testing.T) {
	dir := t.TempDir()
	writeFailures(t, dir, plugin.Failures{plugin.ReasonAttach: {Count: 1}})
	m := metrics.New()
	m.SetStateDir(dir)
	eng := newStatusEngine(t)
	n, err := eng.OpenNode(bpf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m.SetNode(n)
	installertest.PromLint(t, m.Gatherer())
}

// The exported metric names, types and help are those of
// testdata/metrics.txt (UPDATE_GOLDEN=1 rewrites it): a change of the
// metrics is a reviewed change of that file.
func TestMetricsGolden(t *testing.T) {
	r, _ := startWithMetrics(t)
	testenv.Golden(t, filepath.Join("testdata", "metrics.txt"), []byte(describeFamilies(t, r)))
}

// describeFamilies lists the mesh_accel_ families of a scrape, one line
// each: name, type, help, sorted.
func describeFamilies(tb testing.TB, r *run) string {
	tb.Helper()
	var lines []string
	for name, f := range scrape(tb, r) {
		if strings.HasPrefix(name, "mesh_accel_") {
			lines = append(lines, fmt.Sprintf("%s %s %s", name, strings.ToLower(f.GetType().String()), f.GetHelp()))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// The installer sweeps the node state periodically and counts what the
// sweeps removed.
func TestSweepMetric(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	r := h.start(t, Deps{Engine: eng, Sweep: 20 * time.Millisecond})
	r.waitReady(t)
	for deadline := time.Now().Add(5 * time.Second); metricValue(t, r, MetricSweptEntries, "") < 3; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after 5 s, want >= 3 (one entry per sweep)", MetricSweptEntries, metricValue(t, r, MetricSweptEntries, ""))
		}
	}
	// Every sweep is also an upgrade pass, and so is the start.
	eng.node.mu.Lock()
	defer eng.node.mu.Unlock()
	if eng.node.upgrades < eng.node.sweeps+1 {
		t.Errorf("%d upgrade passes for %d sweeps, want one at start and one per sweep", eng.node.upgrades, eng.node.sweeps)
	}
}

// The data path of the pinned programs is exported with the installer's,
// and a skew (an upgrade that kept the node state) is a metric of its own.
func TestDataPathMetric(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	eng.node.skew = "00000000000000ff"
	eng.node.older = []bpf.Retiring{{Dir: "/sys/fs/bpf/mesh-accel/v1", Sockets: 3}}
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	if got := metricValue(t, r, MetricDataPathSkewed, ""); got != 1 {
		t.Errorf("%s = %v, want 1", MetricDataPathSkewed, got)
	}
	if got := metricValue(t, r, MetricNodeActive, ""); got != 1 {
		t.Errorf("%s = %v on a node that runs the data path, want 1", MetricNodeActive, got)
	}
	_, body := r.get(t, PathMetrics)
	for _, want := range []string{MetricDataPath + `{installer="` + bpf.DataPath() + `",pinned="00000000000000ff"} 1`,
		MetricOlderStateSockets + `{layout="v1"} 3`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
