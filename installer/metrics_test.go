package installer

import (
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// metricValue scrapes the installer's /metrics and returns the value of the
// metric name with label reason (empty: no label); -1 when absent.
func metricValue(tb testing.TB, r *run, name, reason string) float64 {
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
	return valueOf(families[name], reason)
}

func valueOf(f *dto.MetricFamily, reason string) float64 {
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		label := ""
		for _, l := range m.Label {
			if l.GetName() == "reason" || l.GetName() == "event" {
				label = l.GetValue()
			}
		}
		if label != reason {
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

// The engine's counters are read at scrape time and exported under their
// metric names, fallbacks and rejections by reason.
func TestMetrics(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	eng := newFakeEngine(t)
	eng.node.setPod("a", bpf.PodConfig{})
	eng.node.setPod("b", bpf.PodConfig{})
	r := h.start(t, Deps{Engine: eng})
	r.waitReady(t)
	eng.node.mu.Lock()
	eng.node.counters = bpf.Counters{
		"connections_accepted": 7, "bytes_redirected": 1 << 20, "messages_redirected": 300,
		"fallback_map_full": 1, "fallback_stack_first": 2, "fallback_peer_gone": 3,
		"rejected_rules": 4, "rejected_no_owner": 5, "sockets_tagged": 99,
		"flow_control_held": 6, "flow_control_resumed": 8, "flow_control_stack_messages": 9,
	}
	eng.node.mu.Unlock()
	for _, tc := range []struct {
		name, reason string
		want         float64
	}{
		{MetricPodsAttached, "", 2},
		{MetricConnectionsAccepted, "", 7},
		{MetricBytesRedirected, "", 1 << 20},
		{MetricMessagesRedirected, "", 300},
		{MetricFallbacks, "map_full", 1},
		{MetricFallbacks, "stack_first", 2},
		{MetricFallbacks, "peer_gone", 3},
		{MetricRejected, "rules", 4},
		{MetricRejected, "no_owner", 5},
		{MetricFlowControl, "held", 6},
		{MetricFlowControl, "resumed", 8},
		{MetricFlowControlMessages, "", 9},
		{MetricDataPathSkewed, "", 0},
		{MetricRuleReloadErrors, "", 0},
		{MetricConflistRepairs, "", 0},
	} {
		if got := metricValue(t, r, tc.name, tc.reason); got != tc.want {
			t.Errorf("%s{reason=%q} = %v, want %v", tc.name, tc.reason, got, tc.want)
		}
	}
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
