package bpf

import (
	"fmt"
)

// counterNames names the per-CPU counters of enum counter (c/mesh_accel.h),
// in its order. Names are stable: the metrics and the CLI use them.
var counterNames = [...]string{
	meshCounterC_SOCK_CREATED:         "sockets_tagged",
	meshCounterC_ACTIVE:               "connecting_registered",
	meshCounterC_CONN_SEEN:            "connections_seen",
	meshCounterC_CONN_ACCEPTED:        "connections_accepted",
	meshCounterC_REJECT_DISABLED:      "rejected_disabled",
	meshCounterC_REJECT_NO_PEER:       "rejected_no_local_peer",
	meshCounterC_REJECT_NO_OWNER:      "rejected_no_owner",
	meshCounterC_REJECT_RULES:         "rejected_rules",
	meshCounterC_REJECT_AMBIGUOUS:     "rejected_ambiguous",
	meshCounterC_REJECT_UNTRUSTED:     "rejected_untrusted_readers",
	meshCounterC_DIR_REDIRECT:         "directions_redirected",
	meshCounterC_DIR_UNTRUSTED:        "directions_untrusted_reader",
	meshCounterC_MSG_REDIRECTED:       "messages_redirected",
	meshCounterC_BYTES_REDIRECTED:     "bytes_redirected",
	meshCounterC_FALLBACK_MAP_FULL:    "fallback_map_full",
	meshCounterC_FALLBACK_STACK_FIRST: "fallback_stack_first",
	meshCounterC_FALLBACK_PEER_GONE:   "fallback_peer_gone",
	meshCounterC_MSG_UNPAIRED:         "messages_unpaired",
	meshCounterC_CLOSED:               "accelerated_pairs_closed",
	meshCounterC_CAPTURE_EVENTS:       "capture_events",
	meshCounterC_CAPTURE_DROPPED:      "capture_dropped",
}

// Counters are the data path's counters summed over CPUs, by name.
type Counters map[string]uint64

// CounterNames lists the counter names in a stable order.
func CounterNames() []string { return append([]string(nil), counterNames[:]...) }

// Counters reads the counters.
func (n *Node) Counters() (Counters, error) {
	out := make(Counters, len(counterNames))
	var per []uint64
	for i, name := range counterNames {
		if err := n.maps.MeshCounters.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}

// Sub returns c - old per counter: the change between two readings.
func (c Counters) Sub(old Counters) Counters {
	d := make(Counters, len(c))
	for k, v := range c {
		d[k] = v - old[k]
	}
	return d
}
