package installer

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

// A rejected rules file sets mesh_accel_rules_last_reload_successful to 0
// (the alert MeshAccelRuleReloadErrors), and the fixed file sets it to 1
// again at the next reload, while the error counter keeps its count.
func TestRulesReloadMetricClears(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	before := float64(time.Now().Unix())
	r := h.start(t, Deps{Engine: newFakeEngine(t)})
	r.waitReady(t)
	if got := metricValue(t, r, MetricRulesReloadSuccessful, ""); got != 1 {
		t.Errorf("%s = %v after the first reload of a good file, want 1", MetricRulesReloadSuccessful, got)
	}
	good := metricValue(t, r, MetricRulesReloadSuccess, "")
	if good < before {
		t.Errorf("%s = %v, want the time of the first reload (>= %v)", MetricRulesReloadSuccess, good, before)
	}

	replaceWith(t, h.cfg.RulesFile, "chain --uid-owner 1337 -j MAYBE\n")
	waitFor(t, "the rejected file on the gauge", func() bool { return metricValue(t, r, MetricRulesReloadSuccessful, "") == 0 })
	if a, s := metricValue(t, r, MetricRulesReloadAttempt, ""), metricValue(t, r, MetricRulesReloadSuccess, ""); a < s || s != good {
		t.Errorf("after a rejected file: last attempt %v, last success %v; want the attempt after the success, "+
			"and the success of the good file (%v)", a, s, good)
	}

	replaceWith(t, h.cfg.RulesFile, rules.DefaultText(nodestate.DefaultSidecarUID))
	waitFor(t, "the fixed file on the gauge", func() bool { return metricValue(t, r, MetricRulesReloadSuccessful, "") == 1 })
	if s := metricValue(t, r, MetricRulesReloadSuccess, ""); s < good {
		t.Errorf("%s = %v after the fix, want a later time than %v", MetricRulesReloadSuccess, s, good)
	}
	if got := metricValue(t, r, MetricRuleReloadErrors, ""); got < 1 {
		t.Errorf("%s = %v, want the rejected file counted", MetricRuleReloadErrors, got)
	}
}

// A value of the ConfigMap's enabled key that is no boolean (an empty one
// included) is a metric, until the key holds true or false again, or goes.
func TestSwitchKeyInvalidMetric(t *testing.T) {
	h := newHost(t)
	writeTree(t, h.cfg.HostCNIConfDir, map[string]string{"10-bridge.conflist": bridgeConflist})
	key := filepath.Join(filepath.Dir(h.cfg.RulesFile), KillSwitchKey)
	r := h.start(t, Deps{Engine: newFakeEngine(t)})
	r.waitReady(t)
	if got := metricValue(t, r, MetricSwitchKeyInvalid, ""); got != 0 {
		t.Errorf("%s = %v without the key, want 0", MetricSwitchKeyInvalid, got)
	}
	for _, tc := range []struct {
		value string
		want  float64
	}{{"yes", 1}, {"true", 0}, {"off", 1}, {"", 1}, {"false", 0}, {"on", 1}, {"<removed>", 0}} {
		if tc.value == "<removed>" {
			if err := os.Remove(key); err != nil {
				t.Fatal(err)
			}
		} else {
			replaceWith(t, key, tc.value+"\n")
		}
		waitFor(t, fmt.Sprintf("%s = %v for %q", MetricSwitchKeyInvalid, tc.want, tc.value), func() bool {
			return metricValue(t, r, MetricSwitchKeyInvalid, "") == tc.want
		})
	}
}
