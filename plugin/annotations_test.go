package plugin

import (
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/rules"
)

func TestPodConfig(t *testing.T) {
	node := rules.Default()
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		rules string // expected, after the node's
		trust bool
	}{
		{"defaults only", map[string]string{}, "", false},
		{"trusted app", map[string]string{AnnotationTrustApp: "true"}, "", true},
		{"untrusted app", map[string]string{AnnotationTrustApp: "false"}, "", false},
		{"own rules", map[string]string{AnnotationRules: "# mine\nchain --port 8080 -j ACCEPT\n\nchain -i 10.0.0.0/8 -j RETURN"},
			"chain --port 8080 -j ACCEPT\nchain --ip 10.0.0.0/8 -j RETURN", false},
		{"Istio exclusions, deduplicated", map[string]string{
			AnnotationExcludeInboundPorts:     "8081, 9090,,",
			AnnotationExcludeOutboundPorts:    "9090,5432",
			AnnotationExcludeOutboundIPRanges: "10.96.0.0/12, fd00::/8, 192.168.1.1, 10.96.1.1/12",
		}, "chain --port 8081 -j RETURN\nchain --port 9090 -j RETURN\nchain --port 5432 -j RETURN\n" +
			"chain --ip 10.96.0.0/12 -j RETURN\nchain --ip fd00::/8 -j RETURN\nchain --ip 192.168.1.1/32 -j RETURN", false},
		{"every address excluded", map[string]string{AnnotationExcludeOutboundIPRanges: "*"},
			"chain --ip 0.0.0.0/0 -j RETURN\nchain --ip ::/0 -j RETURN", false},
		{"own rules before exclusions", map[string]string{AnnotationRules: "chain -p 80 -j ACCEPT", AnnotationExcludeInboundPorts: "81"},
			"chain --port 80 -j ACCEPT\nchain --port 81 -j RETURN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := podConfig(node, tc.ann, 1337)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rules.ParseString("want", "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n"+tc.rules)
			if err != nil {
				t.Fatal(err)
			}
			if !cfg.Rules.Equal(want) || cfg.TrustApp != tc.trust || cfg.SidecarUID != 1337 {
				t.Errorf("got rules\n%v\ntrust %v, want\n%v\ntrust %v", cfg.Rules, cfg.TrustApp, want, tc.trust)
			}
		})
	}
}

// The sidecar-hops profile replaces the node's default rules: every
// connection of the sidecar's uid, port 15006 included; the pod's own rules
// and exclusions still follow.
func TestPodConfigProfile(t *testing.T) {
	cfg, err := podConfig(rules.Default(), map[string]string{AnnotationProfile: ProfileSidecarHops,
		AnnotationExcludeInboundPorts: "81"}, 4242)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rules.ParseString("want", "chain --uid-owner 4242 -j ACCEPT\nchain --port 81 -j RETURN")
	if !cfg.Rules.Equal(want) || cfg.TrustApp {
		t.Errorf("sidecar-hops profile: rules\n%v\ntrust %v; want\n%v", cfg.Rules, cfg.TrustApp, want)
	}
	cfg, err = podConfig(rules.Default(), map[string]string{AnnotationProfile: ProfileDefault}, 1337)
	if err != nil || !cfg.Rules.Equal(rules.Default()) {
		t.Errorf("default profile: %v, %v", cfg.Rules, err)
	}
}

// Under the sidecar-hops profile the node's RETURN rules stay (an
// operator's exclusions), before the profile's ACCEPT rule; only the
// default's port 15006 exclusion, which the profile exists to lift, goes.
func TestPodConfigProfileKeepsNodeReturns(t *testing.T) {
	node, err := rules.ParseString("node", "chain -u 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n"+
		"chain --port 9999 -j RETURN\nchain -i 10.1.0.0/16 -j RETURN\nchain -p 8080 -j ACCEPT")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := podConfig(node, map[string]string{AnnotationProfile: ProfileSidecarHops,
		AnnotationExcludeInboundPorts: "81"}, 1337)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rules.ParseString("want", "chain --port 9999 -j RETURN\nchain --ip 10.1.0.0/16 -j RETURN\n"+
		"chain --uid-owner 1337 -j ACCEPT\nchain --port 81 -j RETURN")
	if !cfg.Rules.Equal(want) {
		t.Errorf("sidecar-hops profile under node rules with exclusions: rules\n%v\nwant\n%v", cfg.Rules, want)
	}
}

// A malformed annotation is reported with its name.
func TestPodConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{AnnotationTrustApp: "yes"}, AnnotationTrustApp + `: "yes"`},
		{map[string]string{AnnotationProfile: "fast"}, AnnotationProfile + `: "fast" is neither`},
		{map[string]string{AnnotationRules: "chain --port 80 -j ACCEPT\nchain --prot 80 -j ACCEPT"}, AnnotationRules + ":2:7"},
		{map[string]string{AnnotationExcludeInboundPorts: "80,http"}, AnnotationExcludeInboundPorts + `: "http" is not a port`},
		{map[string]string{AnnotationExcludeOutboundPorts: "0"}, AnnotationExcludeOutboundPorts + `: "0" is not a port`},
		{map[string]string{AnnotationExcludeOutboundPorts: "65536"}, AnnotationExcludeOutboundPorts},
		{map[string]string{AnnotationExcludeOutboundIPRanges: "10.0.0.0/33"}, AnnotationExcludeOutboundIPRanges + `: "10.0.0.0/33" is not a CIDR`},
		{map[string]string{AnnotationRules: strings.Repeat("chain -p 1 -j ACCEPT\n", 62), AnnotationExcludeInboundPorts: "1"},
			"2 node rules, 62 of " + AnnotationRules + " and 1 Istio exclusions"},
	} {
		_, err := podConfig(rules.Default(), tc.ann, 1337)
		if err == nil || !strings.Contains(err.Error(), tc.want) || reasonOf(err) != ReasonAnnotation {
			t.Errorf("podConfig(%v) = %v, want an annotation error naming %q", tc.ann, err, tc.want)
		}
	}
	// 64 rules in all is fine.
	if _, err := podConfig(rules.Default(), map[string]string{AnnotationRules: strings.Repeat("chain -p 1 -j ACCEPT\n", 62)}, 1337); err != nil {
		t.Errorf("64 rules: %v", err)
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
