package metrics

import (
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/metricnames"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Metric names of the data path's counters (package bpf), one unit per
// metric: sockets, connections, pair directions, messages, bytes or map
// updates. A counter counting the same thing as others for another reason
// is a reason label of their metric. Package metricnames defines them, for
// mesh-accelctl too.
const (
	SocketsTagged        = metricnames.SocketsTagged
	ConnectingRegistered = metricnames.ConnectingRegistered
	ConnectingReleased   = metricnames.ConnectingReleased
	ConnectionsSeen      = metricnames.ConnectionsSeen
	ConnectionsAccepted  = metricnames.ConnectionsAccepted
	ConnectionsRejected  = metricnames.ConnectionsRejected
	ConnectionsClosed    = metricnames.ConnectionsClosed
	RedirectedDirections = metricnames.RedirectedDirections
	FallbackDirections   = metricnames.FallbackDirections
	ResumedDirections    = metricnames.ResumedDirections
	RedirectedMessages   = metricnames.RedirectedMessages
	RedirectedBytes      = metricnames.RedirectedBytes
	FallbackMessages     = metricnames.FallbackMessages
	UnpairedMessages     = metricnames.UnpairedMessages
	MapFullErrors        = metricnames.MapFullErrors
	CapturedMessages     = metricnames.CapturedMessages
	CaptureDropped       = metricnames.CaptureDropped
)

// counterMetric is where one engine counter is exported: its metric and,
// for a metric with reasons, its reason label.
type counterMetric struct{ metric, reason string }

// counterMetrics maps every engine counter (bpf.CounterNames) to its
// metric, as package metricnames does; a test fails when a counter is
// missing.
var counterMetrics = func() map[bpf.Counter]counterMetric {
	m := map[bpf.Counter]counterMetric{}
	for _, name := range metricnames.Counters() {
		c, _ := metricnames.Of(name)
		m[name] = counterMetric{c.Metric, c.Reason}
	}
	return m
}()

// counterMetricHelp is the help of each counter metric.
var counterMetricHelp = map[string]string{
	SocketsTagged:        "Sockets created in attached pods.",
	ConnectingRegistered: "Connecting sockets registered, to be paired with the socket that accepts them.",
	ConnectingReleased:   "Connecting sockets released from the socket maps: their peer is on another node.",
	ConnectionsSeen:      "Accepted connections examined for acceleration.",
	ConnectionsAccepted:  "Connections whose pair was recorded: accelerated connections.",
	ConnectionsRejected:  "Connections not accelerated, by reason.",
	ConnectionsClosed:    "Accelerated connections closed.",
	RedirectedDirections: "Pair directions set up for redirection past the TCP/IP stack.",
	FallbackDirections: "Pair directions left on or moved to the TCP/IP stack, by reason (untrusted_reader: " +
		"the reader may splice; half_close: the reader sent its FIN; zerocopy_sender: the sender uses MSG_ZEROCOPY; " +
		"flow_control: the reader reached the backlog limit; stale_peer: the reader closed unseen, its pod detached).",
	ResumedDirections:  "Directions that flow control held, redirected again once their reader caught up.",
	RedirectedMessages: "Messages redirected past the TCP/IP stack.",
	RedirectedBytes:    "Bytes redirected past the TCP/IP stack.",
	FallbackMessages: "Messages of accelerated connections sent on the TCP/IP stack, by reason (stack_first: " +
		"bytes went there before the pair was recorded; peer_gone: the peer left the socket map; flow_control: " +
		"the direction is held; rcvlowat_reader: the reader set SO_RCVLOWAT).",
	UnpairedMessages: "Messages of sockets with no local peer, sent on the TCP/IP stack.",
	MapFullErrors:    "Map updates that failed because the map was full: the socket or connection took the stack.",
	CapturedMessages: "Messages captured for mesh-accelctl dump.",
	CaptureDropped:   "Captured messages lost because the capture ring buffer was full.",
}

// Node is what the metrics read of every open node (the installer's Node,
// *bpf.Node).
type Node interface {
	Counters() (bpf.Counters, error)
	Pods() ([]bpf.PodInfo, error)
	DataPaths() (bpf.DataPaths, error)
}

// CounterMetric is where one engine counter is exported: its metric and,
// for a metric with reasons, its reason label.
type CounterMetric struct{ Metric, Reason string }

// CounterMetrics returns where every engine counter is exported.
func CounterMetrics() map[bpf.Counter]CounterMetric {
	out := map[bpf.Counter]CounterMetric{}
	for name, cm := range counterMetrics {
		out[name] = CounterMetric{cm.metric, cm.reason}
	}
	return out
}

// nodeStatus is what the metrics read of an open node besides [Node]; the
// real node has it, a node without it reports a switch off and no maps.
type nodeStatus interface {
	Enabled() (bool, error)
	MapFill() ([]bpf.MapFill, error)
}

// nodeShare is the node's fair share of the connection maps and what its
// sweeps did; a node without it reports them as 0.
type nodeShare interface {
	Share() (bpf.Share, error)
	SweepTotals() bpf.Swept
}

var (
	_ nodeStatus = (*bpf.Node)(nil)
	_ nodeShare  = (*bpf.Node)(nil)
)

// engineCollector reads the engine's counters and the node's state at
// every scrape. Until the node state is open (or on an inactive node) it
// reports them as 0.
type engineCollector struct {
	mu       sync.Mutex
	node     Node // nil until the node state is open
	counters map[string]*prometheus.Desc
	pods, broken, enabled, entries, maxEntries,
	dataPath, dataPathSkewed, olderSockets *prometheus.Desc
	podEntries, podQuota, guaranteed, guaranteedPods, pool, poolInUse, expired *prometheus.Desc

	// stateDir is the plugin's state folder, whose records name the pods
	// of the per-pod metrics; names caches them by pod UID.
	stateDir string
	names    map[string]podName
}

// podName is a pod's namespace and name, as the plugin recorded them.
type podName struct{ namespace, name string }

func newEngineCollector() *engineCollector {
	c := &engineCollector{counters: map[string]*prometheus.Desc{},
		pods: prometheus.NewDesc(PodsAttached, "Pods attached on this node.", nil, nil),
		broken: prometheus.NewDesc(PodsBroken, "Pods attached on this node whose state is incomplete (a program "+
			"link or their configuration missing): they may run unaccelerated; mesh-accelctl status names them.", nil, nil),
		enabled: prometheus.NewDesc(Enabled, "1 when the node's switch accelerates new connections (mesh-accelctl enable), 0 when off.", nil, nil),
		entries: prometheus.NewDesc(MapEntries, "Entries in the node state's map: "+
			"counted where they change (pair directions, registrations), the kernel's count (sockets), "+
			"or a walk (per-pod maps); no scrape walks a connection map.", []string{"map"}, nil),
		maxEntries: prometheus.NewDesc(MapMaxEntries,
			"Capacity of the node state's map (entries); a full map sends new connections to the stack.", []string{"map"}, nil),
		dataPath: prometheus.NewDesc(DataPath,
			"The data path (BPF object build) of the pinned programs and of this installer.",
			[]string{"pinned", "installer"}, nil),
		dataPathSkewed: prometheus.NewDesc(DataPathSkewed,
			"1 when the pinned programs are not this installer's (the upgrade pass failed, or has not run yet).", nil, nil),
		olderSockets: prometheus.NewDesc(OlderStateSockets,
			"Sockets still paired under another state (an older layout or another map size, named by its "+
				"folder, e.g. v4 or v5-262144), which an upgrade keeps until they close.",
			[]string{"layout"}, nil),
		podEntries: prometheus.NewDesc(PodMapEntries, "Connection-map entries the pod's connections hold: "+
			"pending registrations and pair directions, charged to the connecting side.", podLabels, nil),
		podQuota: prometheus.NewDesc(PodQuota, "The most connection-map entries the pod's connections may "+
			"hold (its quota); past the guaranteed share only while the node's shared pool has room.", podLabels, nil),
		guaranteed: prometheus.NewDesc(GuaranteedShare, "Connection-map entries every attached pod can always "+
			"hold (up to its quota), whatever the other pods hold.", nil, nil),
		guaranteedPods: prometheus.NewDesc(GuaranteedPods,
			"How many attached pods the guaranteed shares of the connection maps are kept for.", nil, nil),
		pool: prometheus.NewDesc(SharedPool, "Connection-map entries the pods share beyond their guaranteed "+
			"shares: the maps' capacity less the guaranteed shares kept.", nil, nil),
		poolInUse: prometheus.NewDesc(SharedPoolInUse, "Entries of the shared pool in use: what pods hold "+
			"beyond their guaranteed share; when it reaches the pool, such pods' new connections take the stack.", nil, nil),
		expired: prometheus.NewDesc(RegistrationsExpired, "Registrations of connecting sockets the sweep "+
			"released because they waited too long for a local peer (their connections take the stack).", nil, nil),
		names: map[string]podName{},
	}
	for _, cm := range counterMetrics {
		if c.counters[cm.metric] != nil {
			continue
		}
		var labels []string
		if cm.reason != "" {
			labels = []string{"reason"}
		}
		c.counters[cm.metric] = prometheus.NewDesc(cm.metric, counterMetricHelp[cm.metric], labels, nil)
	}
	return c
}

// podLabels label the per-pod metrics: the pod's namespace and name (as
// the CNI plugin recorded them; empty when unknown) and its UID.
var podLabels = []string{"namespace", "pod", "uid"}

func (c *engineCollector) setNode(n Node) {
	c.mu.Lock()
	c.node = n
	c.mu.Unlock()
}

func (c *engineCollector) setStateDir(dir string) {
	c.mu.Lock()
	c.stateDir = dir
	c.mu.Unlock()
}

// podName names a pod from the plugin's record, read once per pod.
func (c *engineCollector) podName(uid string) podName {
	if n, ok := c.names[uid]; ok || c.stateDir == "" {
		return n
	}
	r, err := nodestate.ReadRecord(c.stateDir, uid)
	if err != nil || r == nil {
		return podName{} // not written yet, or unreadable: tried again at the next scrape
	}
	n := podName{r.Namespace, r.Name}
	c.names[uid] = n
	return n
}

// Describe implements prometheus.Collector.
func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.counters {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.pods, c.broken, c.enabled, c.entries, c.maxEntries, c.dataPath, c.dataPathSkewed,
		c.olderSockets, c.podEntries, c.podQuota, c.guaranteed, c.guaranteedPods, c.pool, c.poolInUse, c.expired} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. A read error fails the scrape
// (an invalid metric), rather than reporting zeros.
func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.collectCounters(ch)
	c.collectState(ch)
	if c.node == nil {
		ch <- prometheus.MustNewConstMetric(c.dataPathSkewed, prometheus.GaugeValue, 0)
		return
	}
	dp, err := c.node.DataPaths()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.dataPath, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.dataPath, prometheus.GaugeValue, 1, dp.Pinned, dp.Binary)
	ch <- prometheus.MustNewConstMetric(c.dataPathSkewed, prometheus.GaugeValue, boolValue(dp.Skewed()))
	for _, o := range dp.Older {
		ch <- prometheus.MustNewConstMetric(c.olderSockets, prometheus.GaugeValue, float64(o.Sockets), filepath.Base(o.Dir))
	}
}

// collectCounters exports every engine counter, 0 without node state.
func (c *engineCollector) collectCounters(ch chan<- prometheus.Metric) {
	counters := bpf.Counters{}
	if c.node != nil {
		var err error
		if counters, err = c.node.Counters(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.counters[ConnectionsAccepted], err)
			return
		}
	}
	for name, cm := range counterMetrics {
		var labels []string
		if cm.reason != "" {
			labels = []string{cm.reason}
		}
		ch <- prometheus.MustNewConstMetric(c.counters[cm.metric], prometheus.CounterValue, float64(counters[name]), labels...)
	}
}

// collectState exports the pods, the switch and the maps' fill, 0 without
// node state.
func (c *engineCollector) collectState(ch chan<- prometheus.Metric) {
	var (
		pods    []bpf.PodInfo
		enabled bool
		fill    []bpf.MapFill
		err     error
	)
	for _, name := range bpf.MapFillNames() {
		fill = append(fill, bpf.MapFill{Name: name})
	}
	if c.node != nil {
		if pods, err = c.node.Pods(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.pods, err)
			return
		}
	}
	if s, ok := c.node.(nodeStatus); ok {
		if enabled, err = s.Enabled(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.enabled, err)
			return
		}
		if fill, err = s.MapFill(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.entries, err)
			return
		}
	}
	broken := 0
	for _, p := range pods {
		if p.Broken != nil {
			broken++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.pods, prometheus.GaugeValue, float64(len(pods)))
	ch <- prometheus.MustNewConstMetric(c.broken, prometheus.GaugeValue, float64(broken))
	c.collectShare(ch, pods)
	ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, boolValue(enabled))
	for _, f := range fill {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(f.Entries), f.Name)
		ch <- prometheus.MustNewConstMetric(c.maxEntries, prometheus.GaugeValue, float64(f.MaxEntries), f.Name)
	}
}

// collectShare exports what each pod holds of the connection maps and its
// quota, the node's fair share and the registrations its sweeps released
// (0 without node state).
func (c *engineCollector) collectShare(ch chan<- prometheus.Metric, pods []bpf.PodInfo) {
	seen := map[string]bool{}
	for _, p := range pods {
		seen[p.ID] = true
		n := c.podName(p.ID)
		ch <- prometheus.MustNewConstMetric(c.podEntries, prometheus.GaugeValue, float64(p.Usage.Entries),
			n.namespace, n.name, p.ID)
		ch <- prometheus.MustNewConstMetric(c.podQuota, prometheus.GaugeValue, float64(p.Usage.Quota),
			n.namespace, n.name, p.ID)
	}
	for uid := range c.names {
		if !seen[uid] {
			delete(c.names, uid)
		}
	}
	var (
		sh     bpf.Share
		totals bpf.Swept
	)
	if s, ok := c.node.(nodeShare); ok {
		var err error
		if sh, err = s.Share(); err != nil {
			ch <- prometheus.NewInvalidMetric(c.pool, err)
			return
		}
		totals = s.SweepTotals()
	}
	ch <- prometheus.MustNewConstMetric(c.guaranteed, prometheus.GaugeValue, float64(sh.Guaranteed))
	ch <- prometheus.MustNewConstMetric(c.guaranteedPods, prometheus.GaugeValue, float64(sh.GuaranteedPods))
	ch <- prometheus.MustNewConstMetric(c.pool, prometheus.GaugeValue, float64(sh.Pool))
	ch <- prometheus.MustNewConstMetric(c.poolInUse, prometheus.GaugeValue, float64(sh.Borrowed))
	ch <- prometheus.MustNewConstMetric(c.expired, prometheus.CounterValue, float64(totals.Expired))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
