// Package annotations names the pod annotations mesh-accel reads, for the
// CNI plugin that acts on them and the tools that explain them
// (mesh-accelctl), without the plugin's dependencies.
package annotations

// The pod annotations.
const (
	// Enabled "true" accelerates the pod; "false" keeps it out (also in a
	// namespace labelled Enabled=true); none: the namespace's label decides.
	Enabled = "accel.mesh/enabled"
	// Rules holds the pod's own rules, one a line, in the language of
	// package rules; they follow the node's defaults.
	Rules = "accel.mesh/rules"
	// TrustApp "true" declares that the pod's app reads its sockets with
	// recvmsg, never splice, so data may be redirected into the app's
	// sockets too.
	TrustApp = "accel.mesh/app-reads-with-recvmsg"
	// Profile picks the rules the pod's own follow: ProfileDefault (or
	// none), the node's rules; ProfileSidecarHops, every connection of
	// the sidecar, the sidecar-to-sidecar hop to 15006 included, but for
	// the node's other RETURN rules.
	Profile = "accel.mesh/profile"
	// Istio's exclusions (comma lists), which become RETURN rules.
	ExcludeInboundPorts     = "traffic.sidecar.istio.io/excludeInboundPorts"
	ExcludeOutboundPorts    = "traffic.sidecar.istio.io/excludeOutboundPorts"
	ExcludeOutboundIPRanges = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
)

// The values of Profile.
const (
	ProfileDefault     = "default"
	ProfileSidecarHops = "sidecar-hops"
)
