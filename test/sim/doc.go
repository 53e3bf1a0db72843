// Package sim simulates a Kubernetes node with Istio sidecars on one Linux
// machine, without Kubernetes and without BPF, so that mesh-accel can be
// tested and measured against the traffic it must accelerate.
//
// A [Node] is a Linux bridge with a random private IPv4 /24 and a random ULA
// IPv6 /64, a cgroup v2 directory (<cgroup2 mount>/mesh-accel-sim-<name>) and a
// temporary directory holding a copy of the running executable. A [Pod] is a
// network namespace joined to the bridge by a veth pair, with its own cgroup
// under the node's. A pod may run:
//
//   - an app server (role "app", uid/gid 1000 by default) speaking the small
//     protocol of protocol.go on [::]:8080;
//   - a sidecar, uid/gid 1337, on 15001 (outbound) and 15006 (inbound),
//     with Istio's nat rules installed by iptables-restore and
//     ip6tables-restore inside the pod's namespace: real Envoy configured as
//     istiod configures a sidecar (envoyconfig.go, envoy.go; mutual TLS
//     between sidecars, listeners pushed from a file as pods come and go;
//     docs/envoy.md), or, for faults Envoy cannot produce, the simulator's
//     Go relay (role "sidecar", [PodOptions.GoSidecar]);
//   - one-shot clients (role "client", [Pod.RunClient]) that check what they
//     receive and print a [ClientResult] as JSON;
//   - any other program ([Pod.Start]), e.g. iperf3 or sockperf.
//
// The roles are the test or benchmark binary itself, re-executed: every
// program that uses this package calls [RoleMain] first thing in main or
// TestMain.
//
// # Launching processes
//
// Every process is created directly inside its pod's cgroup
// (clone3 CLONE_INTO_CGROUP through SysProcAttr.UseCgroupFD), in a process
// group of its own, and runs
//
//	nsenter --net=<pod netns> --setuid U --setgid G -- <copied exe>
//
// with MESHSIM_ROLE set. nsenter (unlike "ip netns exec") does not remount
// /sys, so the process still sees the cgroup file systems. Changing uid clears
// the parent-death signal, so the re-executed binary sets PR_SET_PDEATHSIG
// again, checks its parent is still alive and, for arbitrary programs, execs
// the target (role "exec").
//
// # Cleanup
//
// Everything a node creates is named after the node (prefix + 6 random hex
// digits) and recorded, before it is created, in a manifest under
// /run/mesh-accel-sim/. [Node.Close] removes it all. If the process dies
// without Close (test timeout, SIGKILL, Ctrl-C), a janitor process started by
// [NewNode] (the same binary, role "janitor", in its own process group) sees
// its stdin pipe close and removes everything the manifest lists. If even the
// janitor is gone, the next [NewNode] (or [Sweep]) removes manifests whose
// lock no live process holds.
//
// # Observing the path
//
// A connection is known to pass the sidecars when [Pod.RedirectCounts] (the
// packet counters of Istio's two REDIRECT rules, one count per connection)
// grow in the client pod (outbound) and the server pod (inbound), and when the
// app, asked with [OpPeer] (client mode "peer"), reports 127.0.0.6 or ::6 as
// its peer: only the inbound sidecar connects from there. Envoy's own
// counters are at [Pod.EnvoyStat] and [Pod.EnvoyAdmin]; the Go relay counts
// nothing.
//
// # Design choices
//
//   - Pod addresses are .2, .3, ... of the node's subnets in creation order;
//     a failed AddPod consumes its number.
//   - AddPod waits until the bridge forwards the new port and then checks a
//     TCP handshake (IPv4 and IPv6) with an existing pod; when that fails,
//     the error explains the host's br_netfilter and FORWARD settings.
//   - I/O sizes ("random" write sizes of the client, varying read and write
//     sizes of the app) are log-uniform between their bounds, so that tiny
//     and large operations are both frequent, and deterministic per seed.
//   - Every client connection has an I/O deadline ([ClientSpec.Timeout]), so
//     that a stalled stream is reported with how far it got.
//   - Role processes get GORACE=atexit_sleep_ms=0 (unless GORACE sets it), so
//     that race-enabled test binaries do not sleep 1 s at every client exit.
//
// Host state is never changed beyond the node's own bridge, veths, netns
// files and cgroups: the host's iptables rules and sysctls are only read, to
// explain a failing connectivity check (br_netfilter, FORWARD policy).
package sim
