// Package metrics is the installer's Prometheus registry: the data path's
// counters and the node state's figures, read from the open node at every
// scrape (engine.go), the plugin's setup failures (read from the file
// package nodestate owns), the rules ConfigMap's last reading (config.go),
// and the installer's own counters. The names are constants here; the data
// path's come from package metricnames, which mesh-accelctl reads too.
package metrics

import (
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/version"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// Metric names of the installer and the node: what the installer did, the
// node's state and the plugin's failures. The data path's counters are in
// engine.go.
const (
	PodsAttached      = "mesh_accel_pods_attached"
	PodsBroken        = "mesh_accel_pods_broken"
	RuleReloadErrors  = "mesh_accel_rule_reload_errors_total"
	ConflistRepairs   = "mesh_accel_conflist_repairs_total"
	SweptEntries      = "mesh_accel_swept_entries_total"
	DataPath          = "mesh_accel_data_path_info"
	DataPathSkewed    = "mesh_accel_data_path_skewed"
	OlderStateSockets = "mesh_accel_data_path_older_sockets"
	NodeActive        = "mesh_accel_node_active"
	Ready             = "mesh_accel_ready"
	Enabled           = "mesh_accel_enabled"
	BuildInfo         = "mesh_accel_build_info"
	MapEntries        = "mesh_accel_map_entries"
	MapMaxEntries     = "mesh_accel_map_max_entries"
	PodSetupFailures  = "mesh_accel_pod_setup_failures_total"
	CNIAddDuration    = "mesh_accel_cni_add_duration_seconds"
	// The quota: what each pod's connections hold of the connection
	// maps, and the node's fair share (bpf.Share).
	PodMapEntries        = "mesh_accel_pod_map_entries"
	PodQuota             = "mesh_accel_pod_quota_entries"
	GuaranteedShare      = "mesh_accel_pod_guaranteed_entries"
	GuaranteedPods       = "mesh_accel_guaranteed_pods"
	SharedPool           = "mesh_accel_shared_pool_entries"
	SharedPoolInUse      = "mesh_accel_shared_pool_used_entries"
	RegistrationsExpired = "mesh_accel_registrations_expired_total"
)

// Registry is the installer's registry: the engine's counters and the
// node's state, read at scrape time, the installer's own counters, the
// plugin's failure counts, and the Go and process collectors.
type Registry struct {
	reg          *prometheus.Registry
	reloadErrors prometheus.Counter
	repairs      prometheus.Counter
	swept        prometheus.Counter
	active       prometheus.Gauge
	engine       *engineCollector
	failures     *failuresCollector
	addDuration  prometheus.Histogram
	config       *configCollector // the rules ConfigMap: last reload, switch key

	mu    sync.Mutex
	ready func() error // /readyz's check; nil until the server runs
}

// New returns the registry, every metric registered.
func New() *Registry {
	m := &Registry{
		reg: prometheus.NewRegistry(),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: RuleReloadErrors,
			Help: "Rule files that failed to load; the rules in force stayed."}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{Name: ConflistRepairs,
			Help: "Times the entry was put back after the primary CNI rewrote its config."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: SweptEntries,
			Help: "Map entries removed by the sweep: of sockets that closed while their pod was detached, and " +
				"registrations that waited too long for a local peer (also mesh_accel_registrations_expired_total)."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: NodeActive,
			Help: "1 when this node's kernel runs the data path; 0 when it cannot (nothing installed, /readyz says why)."}),
		engine: newEngineCollector(),
		config: newConfigCollector(),
		failures: &failuresCollector{desc: prometheus.NewDesc(PodSetupFailures,
			"Pod setups that failed open (the pod started without acceleration), by reason, as the plugin counts them.",
			[]string{"reason"}, nil)},
	}
	m.addDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: CNIAddDuration,
		Help: "Time of the CNI plugin's ADD of each pod it accelerated, from the plugin's start to its result " +
			"(the runtime also waits for the exec and the Go runtime's start, about 3 ms), read from the plugin's log.",
		Buckets: []float64{.002, .004, .006, .008, .01, .015, .02, .03, .05, .1, .25, .5, 1, 2.5}})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: BuildInfo,
		Help:        "Always 1: the installer's version, its Go version and its data path (BPF object build).",
		ConstLabels: prometheus.Labels{"version": version.Version(), "goversion": runtime.Version(), "data_path": bpf.DataPath()}})
	build.Set(1)
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: Ready,
		Help: "1 when /readyz answers ready (an inactive node included), 0 when it answers not ready."}, m.readyValue)
	m.reg.MustRegister(m.reloadErrors, m.repairs, m.swept, m.active, m.engine, m.config, m.failures, m.addDuration, build, ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Gatherer is what /metrics serves.
func (m *Registry) Gatherer() prometheus.Gatherer { return m.reg }

// SetReadiness makes mesh_accel_ready follow check (/readyz's).
func (m *Registry) SetReadiness(check func() error) {
	m.mu.Lock()
	m.ready = check
	m.mu.Unlock()
}

// SetActive records that this node's kernel runs the data path.
func (m *Registry) SetActive() { m.active.Set(1) }

// SetNode makes the engine's metrics read n; nil: the node state is
// closed, and they read 0.
func (m *Registry) SetNode(n Node) { m.engine.setNode(n) }

// ConflistRepaired counts the entry put back into the primary CNI config.
func (m *Registry) ConflistRepaired() { m.repairs.Inc() }

// RulesReloaded records a reload of the rules file at t, which err (nil:
// accepted) ended; a rejected file is counted too.
func (m *Registry) RulesReloaded(t time.Time, err error) {
	m.config.rulesReloaded(t, err)
	if err != nil {
		m.reloadErrors.Inc()
	}
}

// SwitchRead records whether the switch key's value was not a boolean.
func (m *Registry) SwitchRead(invalid bool) { m.config.switchRead(invalid) }

// Swept counts map entries the sweep removed.
func (m *Registry) Swept(entries int) { m.swept.Add(float64(entries)) }

// ObserveAdd records the time of a plugin's ADD, from its log.
func (m *Registry) ObserveAdd(d time.Duration) { m.addDuration.Observe(d.Seconds()) }

func (m *Registry) readyValue() float64 {
	m.mu.Lock()
	check := m.ready
	m.mu.Unlock()
	if check == nil || check() != nil {
		return 0
	}
	return 1
}

// SetStateDir makes the plugin's failure counts of stateDir a metric, and
// names the pods of the per-pod metrics from the plugin's records there.
func (m *Registry) SetStateDir(stateDir string) {
	m.failures.mu.Lock()
	m.failures.dir = stateDir
	m.failures.mu.Unlock()
	m.engine.setStateDir(stateDir)
}

// failuresCollector exports the plugin's setup failure counts, read at
// every scrape from the file package nodestate owns: every reason the
// plugin knows from zero, and any other the file holds.
type failuresCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	dir  string // the plugin's state folder; "" until known
}

// Describe implements prometheus.Collector.
func (c *failuresCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. A corrupt file fails the scrape
// and says so, rather than reporting zeros.
func (c *failuresCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	dir := c.dir
	c.mu.Unlock()
	if dir == "" {
		return
	}
	f, err := nodestate.ReadFailures(dir)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	reasons := slices.Clone(plugin.Reasons)
	for r := range f {
		if !slices.Contains(reasons, r) {
			reasons = append(reasons, r)
		}
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(f[r].Count), r)
	}
}
