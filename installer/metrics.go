package installer

import (
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// Metric names of the installer and the node: what the installer did, the
// node's state and the plugin's failures. The data path's counters are in
// metrics_engine.go.
const (
	MetricPodsAttached      = "mesh_accel_pods_attached"
	MetricPodsBroken        = "mesh_accel_pods_broken"
	MetricRuleReloadErrors  = "mesh_accel_rule_reload_errors_total"
	MetricConflistRepairs   = "mesh_accel_conflist_repairs_total"
	MetricSweptEntries      = "mesh_accel_swept_entries_total"
	MetricDataPath          = "mesh_accel_data_path_info"
	MetricDataPathSkewed    = "mesh_accel_data_path_skewed"
	MetricOlderStateSockets = "mesh_accel_data_path_older_sockets"
	MetricNodeActive        = "mesh_accel_node_active"
	MetricReady             = "mesh_accel_ready"
	MetricEnabled           = "mesh_accel_enabled"
	MetricBuildInfo         = "mesh_accel_build_info"
	MetricMapEntries        = "mesh_accel_map_entries"
	MetricMapMaxEntries     = "mesh_accel_map_max_entries"
	MetricPodSetupFailures  = "mesh_accel_pod_setup_failures_total"
	MetricCNIAddDuration    = "mesh_accel_cni_add_duration_seconds"
	// The quota: what each pod's connections hold of the connection
	// maps, and the node's fair share (bpf.Share).
	MetricPodMapEntries        = "mesh_accel_pod_map_entries"
	MetricPodQuota             = "mesh_accel_pod_quota_entries"
	MetricGuaranteedShare      = "mesh_accel_pod_guaranteed_entries"
	MetricGuaranteedPods       = "mesh_accel_guaranteed_pods"
	MetricSharedPool           = "mesh_accel_shared_pool_entries"
	MetricSharedPoolInUse      = "mesh_accel_shared_pool_used_entries"
	MetricRegistrationsExpired = "mesh_accel_registrations_expired_total"
)

// metrics is the installer's registry: the engine's counters and the
// node's state, read at scrape time, the installer's own counters, the
// plugin's failure counts, and the Go and process collectors.
type metrics struct {
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
	ready func() error // readiness.check; nil until the server runs
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRuleReloadErrors,
			Help: "Rule files that failed to load; the rules in force stayed."}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricConflistRepairs,
			Help: "Times the entry was put back after the primary CNI rewrote its config."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSweptEntries,
			Help: "Map entries removed by the sweep: of sockets that closed while their pod was detached, and " +
				"registrations that waited too long for a local peer (also mesh_accel_registrations_expired_total)."}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricNodeActive,
			Help: "1 when this node's kernel runs the data path; 0 when it cannot (nothing installed, /readyz says why)."}),
		engine: newEngineCollector(),
		config: newConfigCollector(),
		failures: &failuresCollector{desc: prometheus.NewDesc(MetricPodSetupFailures,
			"Pod setups that failed open (the pod started without acceleration), by reason, as the plugin counts them.",
			[]string{"reason"}, nil)},
	}
	m.addDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricCNIAddDuration,
		Help: "Time of the CNI plugin's ADD of each pod it accelerated, from the plugin's start to its result " +
			"(the runtime also waits for the exec and the Go runtime's start, about 3 ms), read from the plugin's log.",
		Buckets: []float64{.002, .004, .006, .008, .01, .015, .02, .03, .05, .1, .25, .5, 1, 2.5}})
	build := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricBuildInfo,
		Help:        "Always 1: the installer's version, its Go version and its data path (BPF object build).",
		ConstLabels: prometheus.Labels{"version": Version(), "goversion": runtime.Version(), "data_path": bpf.DataPath()}})
	build.Set(1)
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: MetricReady,
		Help: "1 when /readyz answers ready (an inactive node included), 0 when it answers not ready."}, m.readyValue)
	m.reg.MustRegister(m.reloadErrors, m.repairs, m.swept, m.active, m.engine, m.config, m.failures, m.addDuration, build, ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setReadiness makes mesh_accel_ready follow r.
func (m *metrics) setReadiness(r *readiness) {
	m.mu.Lock()
	m.ready = r.check
	m.mu.Unlock()
}

func (m *metrics) readyValue() float64 {
	m.mu.Lock()
	check := m.ready
	m.mu.Unlock()
	if check == nil || check() != nil {
		return 0
	}
	return 1
}

// setStateDir makes the plugin's failure counts of stateDir a metric, and
// names the pods of the per-pod metrics from the plugin's records there.
func (m *metrics) setStateDir(stateDir string) {
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
