// Package ctl implements mesh-accelctl, the operator's command line for a
// node running mesh-accel: status, the global and per-pod switches (with
// draining of live connections), rule control, the accelerated connections,
// the counters and a capture of the bytes sk_msg redirects (live or as a
// pcap file).
//
// The commands work on an [Engine] (the node's BPF state, *bpf.Node in
// production), a [PodDirectory] (pod names, from the CNI plugin's records)
// and a [PodLocator] (the API server, to say on which node a pod runs that
// this node has no record of), so tests can drive them with fakes; [Main]
// runs the command tree and maps errors to exit codes.
//
// The command line follows kubectl's conventions: a pod is NAME with
// -n NAMESPACE (or --pod NAMESPACE/NAME, or its UID); -o table (the
// default), wide, json or yaml and --no-headers choose the output; -f -
// reads stdin; a mistyped command or flag gets "did you mean". Errors say
// which flag or value is wrong and what is expected, a permission error
// says that mesh-accelctl needs root ([ErrNeedsRoot]), and rule errors
// name file:line:column (in characters) in the file given, a ConfigMap or
// manifest included, with a hint for the common mistakes.
package ctl
