package bpf

// Counter names a counter of the data path (counterDefs). The names are
// stable: the installer exports each as a metric (installer/metricnames),
// mesh-accelctl shows them and explains some (status), tests read them.
type Counter string

// The counters, in the order of enum counter (c/mesh_accel.h).
const (
	CounterSocketsTagged             Counter = "sockets_tagged"
	CounterConnectingRegistered      Counter = "connecting_registered"
	CounterConnectionsSeen           Counter = "connections_seen"
	CounterConnectionsAccepted       Counter = "connections_accepted"
	CounterRejectedDisabled          Counter = "rejected_disabled"
	CounterRejectedNoLocalPeer       Counter = "rejected_no_local_peer"
	CounterRejectedNoOwner           Counter = "rejected_no_owner"
	CounterRejectedRules             Counter = "rejected_rules"
	CounterRejectedAmbiguous         Counter = "rejected_ambiguous"
	CounterRejectedUntrustedReaders  Counter = "rejected_untrusted_readers"
	CounterRejectedSeqMismatch       Counter = "rejected_seq_mismatch"
	CounterDirectionsRedirected      Counter = "directions_redirected"
	CounterDirectionsUntrustedReader Counter = "directions_untrusted_reader"
	CounterMessagesRedirected        Counter = "messages_redirected"
	CounterBytesRedirected           Counter = "bytes_redirected"
	CounterFallbackMapFull           Counter = "fallback_map_full"
	CounterFallbackStackFirst        Counter = "fallback_stack_first"
	CounterFallbackPeerGone          Counter = "fallback_peer_gone"
	CounterMessagesUnpaired          Counter = "messages_unpaired"
	CounterAcceleratedPairsClosed    Counter = "accelerated_pairs_closed"
	CounterReleasedRemotePeer        Counter = "released_remote_peer"
	CounterStackAfterHalfClose       Counter = "stack_after_half_close"
	CounterCaptureEvents             Counter = "capture_events"
	CounterCaptureDropped            Counter = "capture_dropped"
	CounterFlowControlHeld           Counter = "flow_control_held"
	CounterFlowControlResumed        Counter = "flow_control_resumed"
	CounterFlowControlStackMessages  Counter = "flow_control_stack_messages"
	CounterStackZerocopySender       Counter = "stack_zerocopy_sender"
	CounterStackRcvlowatReader       Counter = "stack_rcvlowat_reader"
	CounterFallbackStalePeer         Counter = "fallback_stale_peer"
	CounterRejectedPodQuota          Counter = "rejected_pod_quota"
	CounterRejectedSharedPool        Counter = "rejected_shared_pool"
	CounterRejectedTupleInUse        Counter = "rejected_tuple_in_use"
)
