package metrics

import (
	"sync"
	"time"

	"github.com/mesh-accel/mesh-accel/installer/cluster"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names of the configuration the installer reads from the rules
// ConfigMap: the last reload of the rules file and the switch key.
const (
	RulesReloadSuccessful = "mesh_accel_rules_last_reload_successful"
	RulesReloadAttempt    = "mesh_accel_rules_last_reload_attempt_timestamp_seconds"
	RulesReloadSuccess    = "mesh_accel_rules_last_reload_success_timestamp_seconds"
	SwitchKeyInvalid      = "mesh_accel_configmap_enabled_invalid"
)

// configCollector exports what the installer found in the rules ConfigMap
// at its last reading. Unlike mesh_accel_rule_reload_errors_total, whose
// increase stays above 0 for a while after the file is fixed, the reload
// gauges follow the file: 0 while it is rejected, 1 again at the first
// reload that accepts it. They have no series before the first reload (an
// inactive node never reads the rules).
type configCollector struct {
	reloadOK, reloadAttempt, reloadSuccess, switchInvalid *prometheus.Desc

	mu        sync.Mutex
	attempted bool      // the rules were read at least once
	ok        bool      // the last reload accepted the file
	attempt   time.Time // of the last reload
	success   time.Time // of the last reload that accepted the file; zero: none
	invalid   bool      // the switch key's value is not a boolean
}

func newConfigCollector() *configCollector {
	return &configCollector{
		reloadOK: prometheus.NewDesc(RulesReloadSuccessful,
			"1 when the last reload of the rules ConfigMap's file accepted it, 0 when it rejected it (the rules in "+
				"force stayed: mesh-accelctl rules check names the error).", nil, nil),
		reloadAttempt: prometheus.NewDesc(RulesReloadAttempt,
			"Unix time of the last reload of the rules file (at start, on a change and at every re-check).", nil, nil),
		reloadSuccess: prometheus.NewDesc(RulesReloadSuccess,
			"Unix time of the last reload of the rules file that accepted it.", nil, nil),
		switchInvalid: prometheus.NewDesc(SwitchKeyInvalid,
			"1 when the rules ConfigMap's key "+cluster.KillSwitchKey+" is neither true nor false (the node's switch stays "+
				"as it is), else 0.", nil, nil),
	}
}

// rulesReloaded records a reload of the rules file at t, which err (nil:
// accepted) ended.
func (c *configCollector) rulesReloaded(t time.Time, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempted, c.ok, c.attempt = true, err == nil, t
	if err == nil {
		c.success = t
	}
}

// switchRead records whether the switch key's value was not a boolean.
func (c *configCollector) switchRead(invalid bool) {
	c.mu.Lock()
	c.invalid = invalid
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *configCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.reloadOK
	ch <- c.reloadAttempt
	ch <- c.reloadSuccess
	ch <- c.switchInvalid
}

// Collect implements prometheus.Collector.
func (c *configCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.switchInvalid, prometheus.GaugeValue, boolValue(c.invalid))
	if !c.attempted {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.reloadOK, prometheus.GaugeValue, boolValue(c.ok))
	ch <- prometheus.MustNewConstMetric(c.reloadAttempt, prometheus.GaugeValue, unixSeconds(c.attempt))
	if !c.success.IsZero() {
		ch <- prometheus.MustNewConstMetric(c.reloadSuccess, prometheus.GaugeValue, unixSeconds(c.success))
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
