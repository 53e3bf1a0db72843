// Package ctl implements mesh-accelctl, the operator's command line for a
// node running mesh-accel: status, the global and per-pod switches (with
// draining of live connections), rule control, the accelerated connections,
// the counters and a capture of the bytes sk_msg redirects (live or as a
// pcap file).
//
// The commands work on an [Engine] (the node's BPF state, *bpf.Node in
// production) and a [PodDirectory] (pod names), so tests can drive them
// with fakes; [Main] runs the command tree and maps errors to exit codes.
// Every command prints a human table by default and JSON with -o json.
package ctl
