package installer

import (
	"path/filepath"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names.
const (
	MetricPodsAttached        = "mesh_accel_pods_attached"
	MetricConnectionsAccepted = "mesh_accel_connections_accepted_total"
	MetricBytesRedirected     = "mesh_accel_bytes_redirected_total"
	MetricMessagesRedirected  = "mesh_accel_messages_redirected_total"
	MetricFallbacks           = "mesh_accel_fallbacks_total"
	MetricRejected            = "mesh_accel_rejected_total"
	MetricFlowControl         = "mesh_accel_flow_control_events_total"
	MetricFlowControlMessages = "mesh_accel_flow_control_stack_messages_total"
	MetricRuleReloadErrors    = "mesh_accel_rule_reload_errors_total"
	MetricConflistRepairs     = "mesh_accel_conflist_repairs_total"
	MetricSweptEntries        = "mesh_accel_swept_entries_total"
	MetricDataPath            = "mesh_accel_data_path_info"
	MetricDataPathSkewed      = "mesh_accel_data_path_skewed"
	MetricOlderStateSockets   = "mesh_accel_data_path_older_sockets"
	MetricNodeActive          = "mesh_accel_node_active"
)

// Engine counter names (package bpf) behind the metrics; fallback_* and
// rejected_* counters become the reason label of their metric.
const (
	counterAccepted = "connections_accepted"
	counterBytes    = "bytes_redirected"
	counterMessages = "messages_redirected"
	prefixFallback  = "fallback_"
	prefixRejected  = "rejected_"
	counterHeld     = "flow_control_held"
	counterResumed  = "flow_control_resumed"
	counterFCStack  = "flow_control_stack_messages"
)

// metrics is the installer's registry: the engine's counters, read at
// scrape time, and the installer's own counters.
type metrics struct {
	reg          *prometheus.Registry
	reloadErrors prometheus.Counter
	repairs      prometheus.Counter
	swept        prometheus.Counter
	active       prometheus.Gauge
	engine       *engineCollector
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		reloadErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricRuleReloadErrors,
			Help: "Rule files that failed to load; the rules in force stayed."}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricConflistRepairs,
			Help: "Times the entry was put back after the primary CNI rewrote its config."}),
		swept: prometheus.NewCounter(prometheus.CounterOpts{Name: MetricSweptEntries,
			Help: "Map entries removed by the sweep: sockets that closed while their pod was detached."}),
		engine: &engineCollector{
			pods: prometheus.NewDesc(MetricPodsAttached, "Pods attached on this node.", nil, nil),
			accepted: prometheus.NewDesc(MetricConnectionsAccepted,
				"Connections whose pair was accepted for acceleration.", nil, nil),
			bytes:    prometheus.NewDesc(MetricBytesRedirected, "Bytes redirected past the TCP/IP stack.", nil, nil),
			messages: prometheus.NewDesc(MetricMessagesRedirected, "Messages redirected past the TCP/IP stack.", nil, nil),
			fallbacks: prometheus.NewDesc(MetricFallbacks,
				"Messages or directions that took the normal stack, by reason (map_full, stack_first, peer_gone).",
				[]string{"reason"}, nil),
			rejected: prometheus.NewDesc(MetricRejected, "Connections not accelerated, by reason.", []string{"reason"}, nil),
			flowControl: prometheus.NewDesc(MetricFlowControl,
				"Flow control: directions held on the stack because their reader reached the backlog limit "+
					"(event=held), and directions redirected again once it caught up (event=resumed).",
				[]string{"event"}, nil),
			dataPath: prometheus.NewDesc(MetricDataPath,
				"The data path (BPF object build) of the pinned programs and of this installer.",
				[]string{"pinned", "installer"}, nil),
			dataPathSkewed: prometheus.NewDesc(MetricDataPathSkewed,
				"1 when the pinned programs are not this installer's (the upgrade pass failed, or has not run yet).", nil, nil),
			olderSockets: prometheus.NewDesc(MetricOlderStateSockets,
				"Sockets still paired under the state of an older layout, which an upgrade keeps until they close.",
				[]string{"layout"}, nil),
			flowControlMsgs: prometheus.NewDesc(MetricFlowControlMessages,
				"Messages sent on the stack while flow control held their direction.", nil, nil),
		},
	}
	m.active = prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricNodeActive,
		Help: "1 when this node's kernel runs the data path; 0 when it cannot (nothing installed, /readyz says why)."})
	m.reg.MustRegister(m.reloadErrors, m.repairs, m.swept, m.active, m.engine)
	return m
}

// engineCollector reads the engine's counters at every scrape.
type engineCollector struct {
	mu                              sync.Mutex
	node                            Node // nil until the node state is open
	pods, accepted, bytes, messages *prometheus.Desc
	fallbacks, rejected             *prometheus.Desc
	flowControl, flowControlMsgs    *prometheus.Desc
	dataPath, dataPathSkewed        *prometheus.Desc
	olderSockets                    *prometheus.Desc
}

func (c *engineCollector) setNode(n Node) {
	c.mu.Lock()
	c.node = n
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.pods, c.accepted, c.bytes, c.messages, c.fallbacks, c.rejected,
		c.flowControl, c.flowControlMsgs, c.dataPath, c.dataPathSkewed, c.olderSockets} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A read error fails the scrape
// (an invalid metric), rather than reporting zeros.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.node == nil {
		return
	}
	pods, err := c.node.Pods()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.pods, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(len(pods)))
	}
	if dp, err := c.node.DataPaths(); err != nil {
		ch <- prometheus.NewInvalidMetric(c.dataPath, err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.dataPath, prometheus.GaugeValue, 1, dp.Pinned, dp.Binary)
		skewed := 0.0
		if dp.Skewed() {
			skewed = 1
		}
		ch <- prometheus.MustNewConstMetric(c.dataPathSkewed, prometheus.GaugeValue, skewed)
		for _, o := range dp.Older {
			ch <- prometheus.MustNewConstMetric(c.olderSockets, prometheus.GaugeValue, float64(o.Sockets),
				filepath.Base(o.Dir))
		}
	}
	counters, err := c.node.Counters()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.accepted, err)
		return
	}
	for desc, name := range map[*prometheus.Desc]string{c.accepted: counterAccepted, c.bytes: counterBytes,
		c.messages: counterMessages, c.flowControlMsgs: counterFCStack} {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(counters[name]))
	}
	for event, name := range map[string]string{"held": counterHeld, "resumed": counterResumed} {
		ch <- prometheus.MustNewConstMetric(c.flowControl, prometheus.CounterValue, float64(counters[name]), event)
	}
	for name, v := range counters {
		if reason, ok := strings.CutPrefix(name, prefixFallback); ok {
			ch <- prometheus.MustNewConstMetric(c.fallbacks, prometheus.CounterValue, float64(v), reason)
		} else if reason, ok := strings.CutPrefix(name, prefixRejected); ok {
			ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(v), reason)
		}
	}
}
