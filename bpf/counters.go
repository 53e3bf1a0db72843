package bpf

import (
	"fmt"
)

// counterDefs names and describes the per-CPU counters of enum counter
// (c/mesh_accel.h), in its order. Names are stable: the metrics and the CLI
// use them.
var counterDefs = [...]struct {
	name Counter
	help string
}{
	meshCounterC_SOCK_CREATED:         {CounterSocketsTagged, "sockets created in attached pods"},
	meshCounterC_ACTIVE:               {CounterConnectingRegistered, "connecting sockets registered"},
	meshCounterC_CONN_SEEN:            {CounterConnectionsSeen, "accepted connections examined"},
	meshCounterC_CONN_ACCEPTED:        {CounterConnectionsAccepted, "pairs recorded (accelerated connections)"},
	meshCounterC_REJECT_DISABLED:      {CounterRejectedDisabled, "not paired: acceleration off (node or pod)"},
	meshCounterC_REJECT_NO_PEER:       {CounterRejectedNoLocalPeer, "not paired: peer not local or not in an attached pod (or the connecting socket joined no socket map, its destination having refused its pod before)"},
	meshCounterC_REJECT_NO_OWNER:      {CounterRejectedNoOwner, "not paired: socket created before its pod was attached (or accepted by MPTCP)"},
	meshCounterC_REJECT_RULES:         {CounterRejectedRules, "not paired: the rules said RETURN or had no ACCEPT"},
	meshCounterC_REJECT_AMBIGUOUS:     {CounterRejectedAmbiguous, "not paired: connecting endpoint shared by two sockets"},
	meshCounterC_REJECT_UNTRUSTED:     {CounterRejectedUntrustedReaders, "not paired: a reader not trusted to use recvmsg (annotate accel.mesh/app-reads-with-recvmsg or the sidecar-hops profile: a connection is accelerated both ways or not at all)"},
	meshCounterC_REJECT_SEQ_MISMATCH:  {CounterRejectedSeqMismatch, "not paired: the connecting endpoint found is another connection (NAT remapped a port)"},
	meshCounterC_DIR_REDIRECT:         {CounterDirectionsRedirected, "pair directions set up for redirection"},
	meshCounterC_DIR_UNTRUSTED:        {CounterDirectionsUntrustedReader, "pair directions left on the stack: the reader may splice"},
	meshCounterC_MSG_REDIRECTED:       {CounterMessagesRedirected, "messages redirected"},
	meshCounterC_BYTES_REDIRECTED:     {CounterBytesRedirected, "bytes redirected"},
	meshCounterC_FALLBACK_MAP_FULL:    {CounterFallbackMapFull, "a map update failed (map full): the stack was used"},
	meshCounterC_FALLBACK_STACK_FIRST: {CounterFallbackStackFirst, "messages kept on the stack: bytes of the direction went there before the pair was recorded and are not read yet"},
	meshCounterC_FALLBACK_PEER_GONE:   {CounterFallbackPeerGone, "messages whose peer socket had left the socket map"},
	meshCounterC_MSG_UNPAIRED:         {CounterMessagesUnpaired, "messages of sockets with no local peer (stack)"},
	meshCounterC_CLOSED:               {CounterAcceleratedPairsClosed, "accelerated pairs closed"},
	meshCounterC_RELEASED_REMOTE:      {CounterReleasedRemotePeer, "connecting sockets released from the socket map: peer on another node"},
	meshCounterC_HALF_CLOSED:          {CounterStackAfterHalfClose, "directions moved to the stack because their reader sent its FIN"},
	meshCounterC_CAPTURE_EVENTS:       {CounterCaptureEvents, "messages captured (mesh-accelctl dump)"},
	meshCounterC_CAPTURE_DROPPED:      {CounterCaptureDropped, "captured messages lost: the capture ring buffer was full"},
	meshCounterC_FC_HELD:              {CounterFlowControlHeld, "flow control: directions moved to the stack because their reader held the backlog limit of unread bytes"},
	meshCounterC_FC_RESUMED:           {CounterFlowControlResumed, "flow control: held directions redirected again once their reader had read every stack byte"},
	meshCounterC_FC_MSG_STACK:         {CounterFlowControlStackMessages, "flow control: messages sent on the stack while their direction was held"},
	meshCounterC_STACK_ZEROCOPY:       {CounterStackZerocopySender, "directions moved to the stack for good: the sender uses MSG_ZEROCOPY, whose completions only the stack reports"},
	meshCounterC_STACK_RCVLOWAT:       {CounterStackRcvlowatReader, "messages sent on the stack: the reader has SO_RCVLOWAT above 1, which only the stack honours"},
	meshCounterC_STALE_PEER:           {CounterFallbackStalePeer, "directions moved to the stack for good: the reader socket recorded at pairing was closed unseen (its pod detached) or its memory reused, found before its state was trusted"},
	meshCounterC_REJECT_QUOTA:         {CounterRejectedPodQuota, "not paired: the pod holds its quota of connection-map entries"},
	meshCounterC_REJECT_SHARED:        {CounterRejectedSharedPool, "not paired: the pod holds more than its guaranteed share of connection-map entries and the node's shared pool is used up"},
	meshCounterC_REJECT_TUPLE_IN_USE:  {CounterRejectedTupleInUse, "not paired: another socket of the network namespace still holds the connection's tuple in a socket map"},
}

// Counters are the data path's counters summed over CPUs, by name.
type Counters map[Counter]uint64

// CounterNames lists the counter names in a stable order.
func CounterNames() []Counter {
	out := make([]Counter, len(counterDefs))
	for i, d := range counterDefs {
		out[i] = d.name
	}
	return out
}

// CounterHelp says what the counter name counts ("" for an unknown name).
func CounterHelp(name Counter) string {
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
