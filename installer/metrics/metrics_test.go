package metrics

import (
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"
	"github.com/prometheus/client_golang/prometheus"
)

// The reload gauges follow the last reload of the rules file: no series
// before the first, then its result and time, and the time of the last
// success, which a failed reload keeps. (The registry is gathered as
// Prometheus's testutil would: its package needs a module go.mod lacks.)
func TestRulesReloadGauges(t *testing.T) {
	c := newConfigCollector()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	expect := func(step string, want map[string]float64) {
		t.Helper()
		families, err := reg.Gather()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		got := map[string]float64{}
		for _, f := range families {
			if f.GetType() != dto.MetricType_GAUGE || len(f.Metric) != 1 || len(f.Metric[0].Label) != 0 {
				t.Errorf("%s: %s is not one gauge without labels: %v", step, f.GetName(), f)
				continue
			}
			got[f.GetName()] = f.Metric[0].GetGauge().GetValue()
		}
		want[SwitchKeyInvalid] = 0
		if !maps.Equal(got, want) {
			t.Errorf("%s: gauges %v, want %v", step, got, want)
		}
	}
	expect("before the first reload (an inactive node never reloads)", map[string]float64{})
	t0 := time.Unix(1_800_000_000, 0)
	c.rulesReloaded(t0, errors.New("rules file is invalid"))
	expect("first reload rejected", map[string]float64{RulesReloadSuccessful: 0, RulesReloadAttempt: 1_800_000_000})
	c.rulesReloaded(t0.Add(30*time.Second), nil)
	expect("file fixed", map[string]float64{RulesReloadSuccessful: 1,
		RulesReloadAttempt: 1_800_000_030, RulesReloadSuccess: 1_800_000_030})
	c.rulesReloaded(t0.Add(60*time.Second), errors.New("rules file is invalid"))
	expect("broken again", map[string]float64{RulesReloadSuccessful: 0,
		RulesReloadAttempt: 1_800_000_060, RulesReloadSuccess: 1_800_000_030})
}

// The configuration metrics follow the Prometheus conventions.
func TestConfigMetricsLint(t *testing.T) {
	m := New()
	m.RulesReloaded(time.Now(), nil)
	m.SwitchRead(true)
	installertest.PromLint(t, m.reg)
}

// A corrupt failure file fails the scrape, naming the file, rather than
// reporting no failures.
func TestFailuresMetricCorrupt(t *testing.T) {
	dir := t.TempDir()
	installertest.WriteTree(t, dir, map[string]string{"failures.json": "{"})
	m := New()
	m.SetStateDir(dir)
	if _, err := m.reg.Gather(); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "failures.json")) {
		t.Errorf("Gather = %v, want the corrupt file named", err)
	}
}

// Every entry of counterMetrics names an engine counter (a renamed counter
// must be renamed there too) and every metric has a help text.
func TestCounterMetricsKnown(t *testing.T) {
	known := map[bpf.Counter]bool{}
	for _, name := range bpf.CounterNames() {
		known[name] = true
	}
	for name, cm := range counterMetrics {
		if !known[name] {
			t.Errorf("counterMetrics names %s, which is no engine counter", name)
		}
		if counterMetricHelp[cm.metric] == "" {
			t.Errorf("metric %s has no help", cm.metric)
		}
	}
}
