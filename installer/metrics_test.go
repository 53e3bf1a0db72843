package installer

import (
	"encoding/json"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/metrics"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// scrape gets the installer's /metrics, parsed.
func scrape(tb testing.TB, r *run) map[string]*dto.MetricFamily {
	tb.Helper()
	code, body := r.get(tb, PathMetrics)
	if code != http.StatusOK {
		tb.Fatalf("/metrics = %d: %s", code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		tb.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// metricValue scrapes the installer's /metrics and returns the value of the
// metric name whose reason, event or map label is label (empty: none of
// them); -1 when absent.
func metricValue(tb testing.TB, r *run, name, label string) float64 {
	tb.Helper()
	return valueOf(scrape(tb, r)[name], label)
}

func valueOf(f *dto.MetricFamily, label string) float64 {
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		got := ""
		for _, l := range m.Label {
			if n := l.GetName(); n == "reason" || n == "event" || n == "map" {
				got = l.GetValue()
			}
		}
		if got != label {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

// statusEngine is a fake engine whose node also has the switch and the map
// fill that the metrics read (nodeStatus).
type statusEngine struct {
	*fakeEngine
	st *fakeStatus
}

type fakeStatus struct {
	mu      sync.Mutex
	enabled bool
	fill    []bpf.MapFill
	share   bpf.Share
	totals  bpf.Swept
	usage   map[string]bpf.PodUsage // by pod id
}

type statusNode struct {
	Node
	st *fakeStatus
}

func newStatusEngine(tb testing.TB) statusEngine {
	st := &fakeStatus{enabled: true}
	for i, name := range bpf.MapFillNames() {
		st.fill = append(st.fill, bpf.MapFill{Name: name, Entries: i + 1, MaxEntries: 100})
	}
	return statusEngine{newFakeEngine(tb), st}
}

func (e statusEngine) OpenNode(o bpf.Options) (Node, error) {
	n, err := e.fakeEngine.OpenNode(o)
	if err != nil {
		return nil, err
	}
	return statusNode{n, e.st}, nil
}

func (n statusNode) Enabled() (bool, error) {
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	return n.st.enabled, nil
}

func (n statusNode) MapFill() ([]bpf.MapFill, error) {
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	return append([]bpf.MapFill(nil), n.st.fill...), nil
}

func (n statusNode) Share() (bpf.Share, error) {
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	return n.st.share, nil
}

func (n statusNode) SweepTotals() bpf.Swept {
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	return n.st.totals
}

// Pods adds what each pod holds of the connection maps.
func (n statusNode) Pods() ([]bpf.PodInfo, error) {
	pods, err := n.Node.Pods()
	n.st.mu.Lock()
	defer n.st.mu.Unlock()
	for i := range pods {
		pods[i].Usage = n.st.usage[pods[i].ID]
	}
	return pods, err
}

// writeFailures writes the plugin's failure counts as the plugin does.
func writeFailures(tb testing.TB, stateDir string, f plugin.Failures) {
	tb.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		tb.Fatal(err)
	}
	writeTree(tb, stateDir, map[string]string{"failures.json": string(b)})
}

// startWithMetrics runs an installer whose node has every counter set (the
// i-th engine counter is i+1), two pods (one broken), a switch on, filled maps, an older
// layout and plugin failures.
func startWithMetrics(t *testing.T) (*run, statusEngine) {
	t.Helper()
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	writeFailures(t, h.cfg.StateDir, plugin.Failures{plugin.ReasonAttach: {Count: 3}, plugin.ReasonAPI: {Count: 1}})
	writeTree(t, h.cfg.StateDir, map[string]string{"pods/a.json": `{"uid":"a","namespace":"shop","name":"cart"}`})
	eng := newStatusEngine(t)
	eng.node.setPod("a", bpf.PodConfig{})
	eng.node.setBroken("b", bpf.PodConfig{})
	eng.st.share = bpf.Share{Capacity: 65536, Guaranteed: 128, GuaranteedPods: 256, Pool: 32768, Borrowed: 100}
	eng.st.totals = bpf.Swept{Pending: 9, Expired: 7}
	eng.st.usage = map[string]bpf.PodUsage{"a": {Entries: 228, Quota: 8192}}
	eng.node.older = []bpf.Retiring{{Dir: "/sys/fs/bpf/mesh-accel/v1", Sockets: 3}}
	eng.node.mu.Lock()
	for i, name := range bpf.CounterNames() {
		eng.node.counters[name] = uint64(i + 1)
	}
	eng.node.mu.Unlock()
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	return r, eng
}

// Every engine counter is exported, under its metric and reason, with the
// value the engine reads; so are the node's state and the plugin's
// failures. A new engine counter without a metric fails here.
func TestMetrics(t *testing.T) {
	r, _ := startWithMetrics(t)
	families := scrape(t, r)
	for i, name := range bpf.CounterNames() {
		cm, ok := metrics.CounterMetrics()[name]
		if !ok {
			t.Errorf("engine counter %s is not exported: add it to package metricnames", name)
			continue
		}
		if got := valueOf(families[cm.Metric], cm.Reason); got != float64(i+1) {
			t.Errorf("counter %s: %s{reason=%q} = %v, want %d", name, cm.Metric, cm.Reason, got, i+1)
		}
	}
	for i, name := range bpf.MapFillNames() {
		if got := valueOf(families[MetricMapEntries], name); got != float64(i+1) {
			t.Errorf("%s{map=%q} = %v, want %d", MetricMapEntries, name, got, i+1)
		}
		if got := valueOf(families[MetricMapMaxEntries], name); got != 100 {
			t.Errorf("%s{map=%q} = %v, want 100", MetricMapMaxEntries, name, got)
		}
	}
	for _, tc := range []struct {
		name, label string
		want        float64
	}{
		{MetricPodsAttached, "", 2},
		{MetricPodsBroken, "", 1},
		{MetricEnabled, "", 1},
		{MetricReady, "", 1},
		{MetricNodeActive, "", 1},
		{MetricBuildInfo, "", 1},
		{MetricPodSetupFailures, "attach", 3},
		{MetricPodSetupFailures, "api", 1},
		{MetricPodSetupFailures, "cgroup-not-found", 0}, // never failed: reported from zero
		{MetricDataPathSkewed, "", 0},
		{MetricRuleReloadErrors, "", 0},
		{MetricConflistRepairs, "", 0},
		{MetricGuaranteedShare, "", 128},
		{MetricGuaranteedPods, "", 256},
		{MetricSharedPool, "", 32768},
		{MetricSharedPoolInUse, "", 100},
		{MetricRegistrationsExpired, "", 7},
	} {
		if got := valueOf(families[tc.name], tc.label); got != tc.want {
			t.Errorf("%s{%q} = %v, want %v", tc.name, tc.label, got, tc.want)
		}
	}
	build := families[MetricBuildInfo].GetMetric()[0]
	want := map[string]string{"version": Version(), "goversion": runtime.Version(), "data_path": bpf.DataPath()}
	for _, l := range build.Label {
		if want[l.GetName()] != l.GetValue() {
			t.Errorf("%s{%s=%q}, want %q", MetricBuildInfo, l.GetName(), l.GetValue(), want[l.GetName()])
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s (Go and process collectors)", name)
		}
	}
	_, body := r.get(t, PathMetrics)
	for _, want := range []string{
		MetricPodMapEntries + `{namespace="shop",pod="cart",uid="a"} 228`,
		MetricPodQuota + `{namespace="shop",pod="cart",uid="a"} 8192`,
		MetricPodMapEntries + `{namespace="",pod="",uid="b"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
