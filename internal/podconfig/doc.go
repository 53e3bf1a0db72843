// Package podconfig turns a pod's annotations and its node's settings into
// the pod's configuration, bpf.PodConfig: the one path from annotations to
// configuration, which the CNI plugin (ADD and CHECK) and mesh-accelctl
// rules check both take. Rules are built as values of package rules (the
// profile's, the Istio exclusions' RETURN rules), never as text parsed
// again; the pod's own rules are parsed by a [RulesParser], so that
// mesh-accelctl names file:line:column in the manifest it reads.
//
// [Options] lists every per-pod option, one per field of bpf.PodConfig:
// its annotations, its Helm value, installer flag and conflist key, its
// default, its key in mesh-accelctl's pod report and whether CNI CHECK
// compares it. Tests walk the list against the fields (by reflection), so
// that a field added without its entry, or an entry that CHECK, the
// report, the encoder or the decoder misses, fails them.
//
// A new per-pod option needs these files, and no more:
//
//   - bpf/pod.go: the field of PodConfig and its encoding (encodePodConfig);
//     bpf/decode.go its decoding (decodePodConfig); bpf/c/mesh_accel.h and
//     the generated files when the kernel side reads it;
//   - internal/podconfig/options.go: its entry in Options;
//   - set by a pod annotation: internal/annotations/annotations.go (its
//     name; known.go's Known when it is under accel.mesh/), podconfig.go
//     (Pod, FromAnnotations, Pod.Config; Values for a fixed set of
//     values), and the README's table of annotations;
//   - set by the node: podconfig.go (Node), plugin/config.go (the conflist
//     key) and plugin/annotations.go (nodeSettings), installer/config.go
//     (the flag) and installer/entry.go (written to the plugin's entry),
//     the chart (values.yaml, values.schema.json, templates/daemonset.yaml)
//     and manifests/README.md;
//   - plugin/lifecycle.go: sameConfig, CNI CHECK's comparison;
//   - ctl/status.go: podReport (status and rules show), and a column in
//     ctl/rulesshow.go;
//   - tests: a value in plugin/podopts_test.go's everyOption when the
//     plugin sets it, and in the test helpers otherValue and changeField
//     (plugin/podopts_test.go, ctl/podopts_test.go) for a field of a new
//     type.
package podconfig
