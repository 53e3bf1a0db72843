package ctl

// How to run mesh-accelctl in a cluster, in help texts and messages: in
// the installer pod of the node in question. The image has no shell, so
// the binary is named by its path and nothing is piped inside the pod;
// `kubectl exec ds/...` would pick the pod of any node.
const (
	// installerPodCmd prints the installer pod of node NODE.
	installerPodCmd = "kubectl -n mesh-accel get pod -l app.kubernetes.io/name=mesh-accel " +
		"--field-selector spec.nodeName=NODE -o name"
	// execCmd runs mesh-accelctl in the installer pod POD.
	execCmd = "kubectl -n mesh-accel exec POD -- /mesh-accelctl"
)
