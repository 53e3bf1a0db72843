package plugin

import (
	"strings"
)

// podArgs are the Kubernetes arguments of CNI_ARGS
// ("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=name;K8S_POD_UID=uid;...").
type podArgs struct {
	Namespace, Name, UID string
}

// parsePodArgs reads the K8S_POD_* arguments and ignores every other one
// (runtimes add their own, with or without IgnoreUnknown).
func parsePodArgs(cniArgs string) podArgs {
	var a podArgs
	for _, kv := range strings.Split(cniArgs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "K8S_POD_NAMESPACE":
			a.Namespace = strings.TrimSpace(v)
		case "K8S_POD_NAME":
			a.Name = strings.TrimSpace(v)
		case "K8S_POD_UID":
			a.UID = strings.TrimSpace(v)
		}
	}
	return a
}

// isPod reports whether the runtime named a Kubernetes pod.
func (a podArgs) isPod() bool { return a.Namespace != "" && a.Name != "" }

// String labels log lines: "namespace/name".
func (a podArgs) String() string {
	if !a.isPod() {
		return "-"
	}
	return a.Namespace + "/" + a.Name
}
