package podconfig

import (
	"strconv"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Option is one per-pod option: a field of [bpf.PodConfig], what sets it
// and where it shows. The tests walk [Options] against the fields of
// bpf.PodConfig (by reflection), the CNI plugin's CHECK, mesh-accelctl's
// pod report, the encoder and the decoder of the BPF map value: a field
// without its entry, or an entry one of them misses, fails them.
type Option struct {
	// Field is the option's field of bpf.PodConfig.
	Field string
	// Annotations are the pod annotations that set it ([FromAnnotations]
	// reads them); none when the node alone sets it.
	Annotations []string
	// HelmValue, Flag and ConfKey set it for every pod of the node: the
	// chart's value, the installer's flag (mesh-accel-installer --Flag,
	// env MESH_ACCEL_...) and the key of the plugin's conflist entry that
	// the installer writes from it; empty where there is none.
	HelmValue, Flag, ConfKey string
	// Default is the value when nothing sets it.
	Default string
	// Report is the field's key in mesh-accelctl's pod report (status and
	// rules show, -o json and -o yaml); empty when it is not shown.
	Report string
	// Checked says that CNI CHECK compares the attached value with the
	// expected one.
	Checked bool
	// Note says why an option has no setting or is not shown or checked.
	Note string
}

// Options returns every per-pod option, one per field of bpf.PodConfig, in
// the order of the fields.
func Options() []Option {
	return []Option{
		{Field: "Rules", Annotations: []string{annotations.Profile, annotations.Rules,
			annotations.ExcludeInboundPorts, annotations.ExcludeOutboundPorts, annotations.ExcludeOutboundIPRanges},
			HelmValue: "rules", Flag: "rules-file", ConfKey: "rulesFile",
			Default: "the node's rules (rules.DefaultFor the sidecar uid when no rule file is given)",
			Report:  "rules", Checked: true},
		{Field: "TrustApp", Annotations: []string{annotations.TrustApp}, Default: "false",
			Report: "trust_app", Checked: true},
		{Field: "SidecarUID", HelmValue: "sidecarUID", Flag: nodestate.FlagSidecarUID, ConfKey: "sidecarUID",
			Default: strconv.Itoa(nodestate.DefaultSidecarUID), Report: "sidecar_uid", Checked: true},
		{Field: "Disabled", Default: "false", Report: "enabled", Checked: true,
			Note: "not configuration: mesh-accelctl switch sets it on an attached pod; the report shows its " +
				"opposite, and CHECK fails a disabled pod"},
		{Field: "oneWay", Default: "false",
			Note: "benchmarks only (PodConfig.WithOneWay, build tag meshbench): unexported, nothing on a node " +
				"sets it, so it is neither shown nor checked"},
		{Field: "Quota", HelmValue: "podQuota", Flag: "pod-quota", ConfKey: "podQuota",
			Default: strconv.Itoa(bpf.DefaultPodQuota), Report: "quota", Checked: true},
	}
}

// Lookup returns the option of a bpf.PodConfig field; false when there is
// none.
func Lookup(field string) (Option, bool) {
	for _, o := range Options() {
		if o.Field == field {
			return o, true
		}
	}
	return Option{}, false
}

// Annotations returns every annotation the CNI plugin reads: Enabled,
// which decides whether the pod is accelerated at all, then those of
// Options.
func Annotations() []string {
	out := []string{annotations.Enabled}
	for _, o := range Options() {
		out = append(out, o.Annotations...)
	}
	return out
}
