// Package plugin is mesh-accel's chained CNI plugin (type "mesh-accel"): at
// pod ADD it attaches the mesh-accel data path (package bpf) to the pod's
// cgroup with the pod's rules, at DEL it removes it. It speaks CNI 0.3.0 to
// 1.1.0 (0.3.x because Calico, Flannel and Multus configs still name it): ADD,
// DEL, CHECK (0.4.0+), STATUS (1.1.0), GC (1.1.0) and VERSION. The binary
// (cmd/mesh-accel) is one skel.PluginMainFuncs call on [Funcs].
//
// A conflist lists it after the plugins that make the pod's network, with
// the capabilities that let containerd pass the pod's annotations and
// cgroup:
//
//	{"type": "mesh-accel",
//	 "capabilities": {"io.kubernetes.cri.pod-annotations": true, "cgroupPath": true},
//	 "rulesFile": "/etc/mesh-accel/rules", "kubeconfig": "/etc/cni/net.d/mesh-accel.kubeconfig"}
//
// See [Config] for every field. Malformed configuration JSON is always a CNI
// error naming the field; unknown fields are ignored.
//
// # One ADD
//
// Without a prevResult the ADD fails ("must be called as a chained
// plugin"). Otherwise it always prints the previous result, unchanged, in
// the configuration's CNI version, after:
//
//  1. Pods only (K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS), outside
//     the excluded namespaces (kube-system by default).
//  2. The annotations: runtimeConfig's io.kubernetes.cri.pod-annotations,
//     else the pod read from the API server with the kubeconfig (client-go,
//     3 tries within apiTimeout). [AnnotationEnabled] "true" goes on, any
//     other value ("false") stops; a pod without it goes on when its
//     namespace is labelled accel.mesh/enabled=true, as the installer
//     records it in stateDir/namespaces.json (package nsoptin; the file is
//     read only for pods without the annotation, never the API server).
//  3. The pod's configuration, from its annotations and the node's
//     settings (package podconfig, which mesh-accelctl rules check uses
//     too): the node's rules (rulesFile, else rules.DefaultFor the
//     configured sidecar uid, or those of [AnnotationProfile] under them),
//     then the pod's own ([AnnotationRules]), then its Istio exclusions as
//     RETURN rules, at most 64 in all; [AnnotationTrustApp]; the sidecar
//     uid and podQuota. CHECK compares every one of them.
//  4. The cgroup: runtimeConfig's cgroupPath (a path absolute or relative
//     to the cgroup v2 mount, a systemd slice, or systemd's
//     "slice:prefix:name"), else found by K8S_POD_UID where the kubelet puts
//     it with either cgroup driver and any QoS class.
//  5. A record of the attachment in the state folder, then
//     bpf.Node.AttachPod under the pod's uid (a repeated ADD updates).
//
// Any failure in 2-5 (no BPF, cgroup v1 only, cgroup not found, API server
// unreachable, malformed annotation...) is logged with its reason and
// counted ([ReadFailures]); the pod starts without acceleration unless the
// configuration says failOnError. A failure of a pod asking for
// acceleration (not an unreachable API server) also leaves a record in
// stateDir/events/ (package eventspool), which the installer posts as a
// Warning Event of the pod (AccelerationSetupFailed): the ADD never waits
// for the API server.
//
// # DEL, CHECK, STATUS, GC
//
// DEL detaches the pod by its uid and removes its record. It never asks the
// API server, and succeeds when the netns, the cgroup or the state are
// gone. A DEL from a container other than the one recorded (an older
// sandbox of the same pod) leaves the pod alone. CHECK fails (code 101) when
// a pod ADD would accelerate has no state, or state that differs. STATUS
// fails (code 50) when the kernel lacks a feature, the node state is missing
// or the rules file is bad. GC detaches the pods of this network whose
// recorded container and interface are not in cni.dev/valid-attachments.
//
// # State and logs
//
// The state folder (stateDir, /var/lib/mesh-accel) holds one record per
// attached pod, pods/<uid>.json, naming the network, container id and
// interface that attached it, failures.json, the setup failures by
// reason, events/, the Events waiting for the installer, and
// namespaces.json, the opted-in namespaces the installer keeps. ADD and DEL hold its lock shared and GC exclusively, so GC never
// sees an ADD half done; every file is replaced atomically.
//
// Nothing but the CNI result goes to stdout. Logs (log/slog text) go to
// stderr and to logFile (/var/log/mesh-accel/cni.log, rotated at 10 MiB
// into logFile.1), every line labelled with the command, the pod
// (namespace/name), its uid and the container.
package plugin
