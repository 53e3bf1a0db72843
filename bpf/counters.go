package bpf

import (
	"fmt"
)

// counterDefs names and describes the per-CPU counters of enum counter
// (c/mesh_accel.h), in its order. Names are stable: the metrics and the CLI
// use them.
var counterDefs = [...]struct{ name, help string }{
	meshCounterC_SOCK_CREATED:         {"sockets_tagged", "sockets created in attached pods"},
	meshCounterC_ACTIVE:               {"connecting_registered", "connecting sockets registered"},
	meshCounterC_CONN_SEEN:            {"connections_seen", "accepted connections examined"},
	meshCounterC_CONN_ACCEPTED:        {"connections_accepted", "pairs recorded (accelerated connections)"},
	meshCounterC_REJECT_DISABLED:      {"rejected_disabled", "not paired: acceleration off (node or pod)"},
	meshCounterC_REJECT_NO_PEER:       {"rejected_no_local_peer", "not paired: peer not local or not in an attached pod"},
	meshCounterC_REJECT_NO_OWNER:      {"rejected_no_owner", "not paired: socket created before its pod was attached (or accepted by MPTCP)"},
	meshCounterC_REJECT_RULES:         {"rejected_rules", "not paired: the rules said RETURN or had no ACCEPT"},
	meshCounterC_REJECT_AMBIGUOUS:     {"rejected_ambiguous", "not paired: connecting endpoint shared by two sockets"},
	meshCounterC_REJECT_UNTRUSTED:     {"rejected_untrusted_readers", "not paired: a reader not trusted to use recvmsg (annotate accel.mesh/app-reads-with-recvmsg or the sidecar-hops profile: a connection is accelerated both ways or not at all)"},
	meshCounterC_REJECT_SEQ_MISMATCH:  {"rejected_seq_mismatch", "not paired: the connecting endpoint found is another connection (NAT remapped a port)"},
	meshCounterC_DIR_REDIRECT:         {"directions_redirected", "pair directions set up for redirection"},
	meshCounterC_DIR_UNTRUSTED:        {"directions_untrusted_reader", "pair directions left on the stack: the reader may splice"},
	meshCounterC_MSG_REDIRECTED:       {"messages_redirected", "messages redirected"},
	meshCounterC_BYTES_REDIRECTED:     {"bytes_redirected", "bytes redirected"},
	meshCounterC_FALLBACK_MAP_FULL:    {"fallback_map_full", "a map update failed (map full): the stack was used"},
	meshCounterC_FALLBACK_STACK_FIRST: {"fallback_stack_first", "messages kept on the stack: bytes of the direction went there before the pair was recorded and are not read yet"},
	meshCounterC_FALLBACK_PEER_GONE:   {"fallback_peer_gone", "messages whose peer socket had left the socket map"},
	meshCounterC_MSG_UNPAIRED:         {"messages_unpaired", "messages of sockets with no local peer (stack)"},
	meshCounterC_CLOSED:               {"accelerated_pairs_closed", "accelerated pairs closed"},
	meshCounterC_RELEASED_REMOTE:      {"released_remote_peer", "connecting sockets released from the socket map: peer on another node"},
	meshCounterC_HALF_CLOSED:          {"stack_after_half_close", "directions moved to the stack because their reader sent its FIN"},
	meshCounterC_CAPTURE_EVENTS:       {"capture_events", "messages captured (mesh-accelctl dump)"},
	meshCounterC_CAPTURE_DROPPED:      {"capture_dropped", "captured messages lost: the capture ring buffer was full"},
	meshCounterC_FC_HELD:              {"flow_control_held", "flow control: directions moved to the stack because their reader held the backlog limit of unread bytes"},
	meshCounterC_FC_RESUMED:           {"flow_control_resumed", "flow control: held directions redirected again once their reader had read every stack byte"},
	meshCounterC_FC_MSG_STACK:         {"flow_control_stack_messages", "flow control: messages sent on the stack while their direction was held"},
	meshCounterC_STACK_ZEROCOPY:       {"stack_zerocopy_sender", "directions moved to the stack for good: the sender uses MSG_ZEROCOPY, whose completions only the stack reports"},
	meshCounterC_STACK_RCVLOWAT:       {"stack_rcvlowat_reader", "messages sent on the stack: the reader has SO_RCVLOWAT above 1, which only the stack honours"},
	meshCounterC_STALE_PEER:           {"fallback_stale_peer", "directions moved to the stack for good: the reader socket recorded at pairing was closed unseen (its pod detached) or its memory reused, found before its state was trusted"},
	meshCounterC_REJECT_QUOTA:         {"rejected_pod_quota", "not paired: the pod holds its quota of connection-map entries"},
	meshCounterC_REJECT_SHARED:        {"rejected_shared_pool", "not paired: the pod holds more than its guaranteed share of connection-map entries and the node's shared pool is used up"},
	meshCounterC_REJECT_TUPLE_IN_USE:  {"rejected_tuple_in_use", "not paired: another socket of the network namespace still holds the connection's tuple in a socket map"},
}

// Counters are the data path's counters summed over CPUs, by name.
type Counters map[string]uint64

// CounterNames lists the counter names in a stable order.
func CounterNames() []string {
	out := make([]string, len(counterDefs))
	for i, d := range counterDefs {
		out[i] = d.name
	}
	return out
}

// CounterHelp says what the counter name counts ("" for an unknown name).
func CounterHelp(name string) string {
	for _, d := range counterDefs {
		if d.name == name {
			return d.help
		}
	}
	return ""
}

// Counters reads the counters.
func (n *Node) Counters() (Counters, error) {
	out := make(Counters, len(counterDefs))
	var per []uint64
	for i, d := range counterDefs {
		name := d.name
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
