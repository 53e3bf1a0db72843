// Package metricnames names the metrics the installer exports for the data
// path's counters (bpf.Counter), without the installer's dependencies, so
// that mesh-accelctl can show each counter's metric (stats -o wide). The
// installer's metrics are defined from it (installer/metrics/engine.go).
package metricnames

import (
	"fmt"
	"slices"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// Metric names of the data path's counters, one unit per metric: sockets,
// connections, pair directions, messages, bytes or map updates. A counter
// counting the same thing as others for another reason is a reason label
// of their metric.
const (
	SocketsTagged        = "mesh_accel_sockets_tagged_total"
	ConnectingRegistered = "mesh_accel_connecting_sockets_registered_total"
	ConnectingReleased   = "mesh_accel_connecting_sockets_released_total"
	ConnectionsSeen      = "mesh_accel_connections_seen_total"
	ConnectionsAccepted  = "mesh_accel_connections_accepted_total"
	ConnectionsRejected  = "mesh_accel_connections_rejected_total"
	ConnectionsClosed    = "mesh_accel_connections_closed_total"
	RedirectedDirections = "mesh_accel_redirected_directions_total"
	FallbackDirections   = "mesh_accel_fallback_directions_total"
	ResumedDirections    = "mesh_accel_flow_control_resumed_directions_total"
	RedirectedMessages   = "mesh_accel_redirected_messages_total"
	RedirectedBytes      = "mesh_accel_redirected_bytes_total"
	FallbackMessages     = "mesh_accel_fallback_messages_total"
	UnpairedMessages     = "mesh_accel_unpaired_messages_total"
	MapFullErrors        = "mesh_accel_map_full_errors_total"
	CapturedMessages     = "mesh_accel_captured_messages_total"
	CaptureDropped       = "mesh_accel_capture_dropped_messages_total"
)

// Counter is where one engine counter is exported: its metric and, for a
// metric with reasons, the value of its reason label.
type Counter struct{ Metric, Reason string }

// Series spells the counter's series as PromQL selects it:
// mesh_accel_connections_rejected_total{reason="rules"}.
func (c Counter) Series() string {
	if c.Reason == "" {
		return c.Metric
	}
	return fmt.Sprintf("%s{reason=%q}", c.Metric, c.Reason)
}

// counters maps every engine counter (bpf.CounterNames), by its constant,
// to its metric; an installer test fails when a counter is missing.
var counters = map[bpf.Counter]Counter{
	bpf.CounterSocketsTagged:             {SocketsTagged, ""},
	bpf.CounterConnectingRegistered:      {ConnectingRegistered, ""},
	bpf.CounterReleasedRemotePeer:        {ConnectingReleased, ""},
	bpf.CounterConnectionsSeen:           {ConnectionsSeen, ""},
	bpf.CounterConnectionsAccepted:       {ConnectionsAccepted, ""},
	bpf.CounterRejectedDisabled:          {ConnectionsRejected, "disabled"},
	bpf.CounterRejectedNoLocalPeer:       {ConnectionsRejected, "no_local_peer"},
	bpf.CounterRejectedNoOwner:           {ConnectionsRejected, "no_owner"},
	bpf.CounterRejectedRules:             {ConnectionsRejected, "rules"},
	bpf.CounterRejectedAmbiguous:         {ConnectionsRejected, "ambiguous"},
	bpf.CounterRejectedUntrustedReaders:  {ConnectionsRejected, "untrusted_readers"},
	bpf.CounterRejectedSeqMismatch:       {ConnectionsRejected, "seq_mismatch"},
	bpf.CounterRejectedPodQuota:          {ConnectionsRejected, "pod_quota"},
	bpf.CounterRejectedSharedPool:        {ConnectionsRejected, "shared_pool"},
	bpf.CounterRejectedTupleInUse:        {ConnectionsRejected, "tuple_in_use"},
	bpf.CounterAcceleratedPairsClosed:    {ConnectionsClosed, ""},
	bpf.CounterDirectionsRedirected:      {RedirectedDirections, ""},
	bpf.CounterDirectionsUntrustedReader: {FallbackDirections, "untrusted_reader"},
	bpf.CounterStackAfterHalfClose:       {FallbackDirections, "half_close"},
	bpf.CounterStackZerocopySender:       {FallbackDirections, "zerocopy_sender"},
	bpf.CounterFlowControlHeld:           {FallbackDirections, "flow_control"},
	bpf.CounterFallbackStalePeer:         {FallbackDirections, "stale_peer"},
	bpf.CounterFlowControlResumed:        {ResumedDirections, ""},
	bpf.CounterMessagesRedirected:        {RedirectedMessages, ""},
	bpf.CounterBytesRedirected:           {RedirectedBytes, ""},
	bpf.CounterFallbackStackFirst:        {FallbackMessages, "stack_first"},
	bpf.CounterFallbackPeerGone:          {FallbackMessages, "peer_gone"},
	bpf.CounterFlowControlStackMessages:  {FallbackMessages, "flow_control"},
	bpf.CounterStackRcvlowatReader:       {FallbackMessages, "rcvlowat_reader"},
	bpf.CounterMessagesUnpaired:          {UnpairedMessages, ""},
	bpf.CounterFallbackMapFull:           {MapFullErrors, ""},
	bpf.CounterCaptureEvents:             {CapturedMessages, ""},
	bpf.CounterCaptureDropped:            {CaptureDropped, ""},
}

// Of returns the metric of the engine counter name; false for a counter
// the installer does not export.
func Of(name bpf.Counter) (Counter, bool) {
	c, ok := counters[name]
	return c, ok
}

// Counters returns the engine counters the installer exports, sorted.
func Counters() []bpf.Counter {
	out := make([]bpf.Counter, 0, len(counters))
	for name := range counters {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}
