// Package metricnames names the metrics the installer exports for the data
// path's counters (package bpf), without the installer's dependencies, so
// that mesh-accelctl can show each counter's metric (stats -o wide). The
// installer's metrics are defined from it (installer/metrics_engine.go).
package metricnames

import (
	"fmt"
	"sort"
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

// counters maps every engine counter (bpf.CounterNames) to its metric; an
// installer test fails when a counter is missing.
var counters = map[string]Counter{
	"sockets_tagged":              {SocketsTagged, ""},
	"connecting_registered":       {ConnectingRegistered, ""},
	"released_remote_peer":        {ConnectingReleased, ""},
	"connections_seen":            {ConnectionsSeen, ""},
	"connections_accepted":        {ConnectionsAccepted, ""},
	"rejected_disabled":           {ConnectionsRejected, "disabled"},
	"rejected_no_local_peer":      {ConnectionsRejected, "no_local_peer"},
	"rejected_no_owner":           {ConnectionsRejected, "no_owner"},
	"rejected_rules":              {ConnectionsRejected, "rules"},
	"rejected_ambiguous":          {ConnectionsRejected, "ambiguous"},
	"rejected_untrusted_readers":  {ConnectionsRejected, "untrusted_readers"},
	"rejected_seq_mismatch":       {ConnectionsRejected, "seq_mismatch"},
	"rejected_pod_quota":          {ConnectionsRejected, "pod_quota"},
	"rejected_shared_pool":        {ConnectionsRejected, "shared_pool"},
	"rejected_tuple_in_use":       {ConnectionsRejected, "tuple_in_use"},
	"accelerated_pairs_closed":    {ConnectionsClosed, ""},
	"directions_redirected":       {RedirectedDirections, ""},
	"directions_untrusted_reader": {FallbackDirections, "untrusted_reader"},
	"stack_after_half_close":      {FallbackDirections, "half_close"},
	"stack_zerocopy_sender":       {FallbackDirections, "zerocopy_sender"},
	"flow_control_held":           {FallbackDirections, "flow_control"},
	"fallback_stale_peer":         {FallbackDirections, "stale_peer"},
	"flow_control_resumed":        {ResumedDirections, ""},
	"messages_redirected":         {RedirectedMessages, ""},
	"bytes_redirected":            {RedirectedBytes, ""},
	"fallback_stack_first":        {FallbackMessages, "stack_first"},
	"fallback_peer_gone":          {FallbackMessages, "peer_gone"},
	"flow_control_stack_messages": {FallbackMessages, "flow_control"},
	"stack_rcvlowat_reader":       {FallbackMessages, "rcvlowat_reader"},
	"messages_unpaired":           {UnpairedMessages, ""},
	"fallback_map_full":           {MapFullErrors, ""},
	"capture_events":              {CapturedMessages, ""},
	"capture_dropped":             {CaptureDropped, ""},
}

// Of returns the metric of the engine counter name; false for a counter
// the installer does not export.
func Of(name string) (Counter, bool) {
	c, ok := counters[name]
	return c, ok
}

// Counters returns the engine counters the installer exports, sorted.
func Counters() []string {
	out := make([]string, 0, len(counters))
	for name := range counters {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
