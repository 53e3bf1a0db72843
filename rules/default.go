package rules

import (
	"fmt"
	"strings"
)

// DefaultText is DefaultFor(uid) as a rule file: the node's default rules
// where they are text. The installer writes it when no rule file is
// mounted; the chart's template, manifests/configmap.yaml and
// mesh-accelctl's help are generated from it (`go generate
// ./manifests/render`) or built with it.
func DefaultText(uid uint32) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# accelerate traffic of uid %d (Envoy), never port 15006\n", uid)
	for _, r := range DefaultFor(uid).Rules {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}
