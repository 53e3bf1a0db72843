package plugin

import (
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/podconfig"
	"github.com/mesh-accel/mesh-accel/rules"
)

// A pod's configuration comes from package podconfig (its tests cover the
// annotations); whatever it refuses is a setup failure of reason
// annotation, which names the annotation.
func TestPodConfigReason(t *testing.T) {
	node := podconfig.Node{Rules: rules.Default(), SidecarUID: 1337}
	for _, ann := range []map[string]string{
		{AnnotationTrustApp: "yes"},
		{AnnotationProfile: "fast"},
		{AnnotationRules: "chain --prot 80 -j ACCEPT"},
		{AnnotationExcludeOutboundPorts: "0"},
		{AnnotationRules: strings.Repeat("chain -p 1 -j ACCEPT\n", 63)},
	} {
		_, err := podConfig(node, ann)
		if err == nil || reasonOf(err) != ReasonAnnotation {
			t.Errorf("podConfig(%v) = %v, want a failure of reason %s", ann, err, ReasonAnnotation)
		}
	}
	cfg, err := podConfig(podconfig.Node{Rules: rules.Default(), SidecarUID: 4242, Quota: 500},
		map[string]string{AnnotationTrustApp: "true"})
	if err != nil || !cfg.TrustApp || cfg.SidecarUID != 4242 || cfg.Quota != 500 || !cfg.Rules.Equal(rules.Default()) {
		t.Errorf("podConfig: %+v, %v", cfg, err)
	}
}

func TestNodeRules(t *testing.T) {
	s, err := nodeRules(&Config{SidecarUID: 4242})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rules.ParseString("want", "chain --uid-owner 4242 -j ACCEPT\nchain --port 15006 -j RETURN")
	if !s.Equal(want) {
		t.Errorf("default rules with sidecar uid 4242: %v", s)
	}
	if _, err := nodeRules(&Config{RulesFile: "/nonexistent/rules"}); reasonOf(err) != ReasonRulesFile {
		t.Errorf("missing rules file: %v", err)
	}
}
