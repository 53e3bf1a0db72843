package podconfig

import (
	"errors"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

func TestBuild(t *testing.T) {
	node := rules.Default()
	for _, tc := range []struct {
		name  string
		ann   map[string]string
		rules string // expected, after the node's
		trust bool
	}{
		{"defaults only", map[string]string{}, "", false},
		{"trusted app", map[string]string{annotations.TrustApp: "true"}, "", true},
		{"untrusted app", map[string]string{annotations.TrustApp: "false"}, "", false},
		{"own rules", map[string]string{annotations.Rules: "# mine\nchain --port 8080 -j ACCEPT\n\nchain -i 10.0.0.0/8 -j RETURN"},
			"chain --port 8080 -j ACCEPT\nchain --ip 10.0.0.0/8 -j RETURN", false},
		{"Istio exclusions, deduplicated", map[string]string{
			annotations.ExcludeInboundPorts:     "8081, 9090,,",
			annotations.ExcludeOutboundPorts:    "9090,5432",
			annotations.ExcludeOutboundIPRanges: "10.96.0.0/12, fd00::/8, 192.168.1.1, 10.96.1.1/12",
		}, "chain --port 8081 -j RETURN\nchain --port 9090 -j RETURN\nchain --port 5432 -j RETURN\n" +
			"chain --ip 10.96.0.0/12 -j RETURN\nchain --ip fd00::/8 -j RETURN\nchain --ip 192.168.1.1/32 -j RETURN", false},
		{"every address excluded", map[string]string{annotations.ExcludeOutboundIPRanges: "*"},
			"chain --ip 0.0.0.0/0 -j RETURN\nchain --ip ::/0 -j RETURN", false},
		{"own rules before exclusions", map[string]string{annotations.Rules: "chain -p 80 -j ACCEPT", annotations.ExcludeInboundPorts: "81"},
			"chain --port 80 -j ACCEPT\nchain --port 81 -j RETURN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Build(Node{Rules: node, SidecarUID: 1337}, tc.ann)
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
func TestBuildProfile(t *testing.T) {
	cfg, err := Build(Node{Rules: rules.Default(), SidecarUID: 4242}, map[string]string{annotations.Profile: annotations.ProfileSidecarHops,
		annotations.ExcludeInboundPorts: "81"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rules.ParseString("want", "chain --uid-owner 4242 -j ACCEPT\nchain --port 81 -j RETURN")
	if !cfg.Rules.Equal(want) || cfg.TrustApp {
		t.Errorf("sidecar-hops profile: rules\n%v\ntrust %v; want\n%v", cfg.Rules, cfg.TrustApp, want)
	}
	cfg, err = Build(Node{Rules: rules.Default(), SidecarUID: 1337}, map[string]string{annotations.Profile: annotations.ProfileDefault})
	if err != nil || !cfg.Rules.Equal(rules.Default()) {
		t.Errorf("default profile: %v, %v", cfg.Rules, err)
	}
}

// Under the sidecar-hops profile the node's RETURN rules stay (an
// operator's exclusions), before the profile's ACCEPT rule; only the
// default's port 15006 exclusion, which the profile exists to lift, goes.
func TestBuildProfileKeepsNodeReturns(t *testing.T) {
	node, err := rules.ParseString("node", "chain -u 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n"+
		"chain --port 9999 -j RETURN\nchain -i 10.1.0.0/16 -j RETURN\nchain -p 8080 -j ACCEPT")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Build(Node{Rules: node, SidecarUID: 1337}, map[string]string{annotations.Profile: annotations.ProfileSidecarHops,
		annotations.ExcludeInboundPorts: "81"})
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
func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{map[string]string{annotations.TrustApp: "yes"}, annotations.TrustApp + `: "yes"`},
		{map[string]string{annotations.Profile: "fast"}, annotations.Profile + `: "fast" is neither`},
		{map[string]string{annotations.Rules: "chain --port 80 -j ACCEPT\nchain --prot 80 -j ACCEPT"}, annotations.Rules + ":2:7"},
		{map[string]string{annotations.ExcludeInboundPorts: "80,http"}, annotations.ExcludeInboundPorts + `: "http" is not a port`},
		{map[string]string{annotations.ExcludeOutboundPorts: "0"}, annotations.ExcludeOutboundPorts + `: "0" is not a port`},
		{map[string]string{annotations.ExcludeOutboundPorts: "65536"}, annotations.ExcludeOutboundPorts},
		{map[string]string{annotations.ExcludeOutboundIPRanges: "10.0.0.0/33"}, annotations.ExcludeOutboundIPRanges + `: "10.0.0.0/33" is not a CIDR`},
		{map[string]string{annotations.Rules: strings.Repeat("chain -p 1 -j ACCEPT\n", 62), annotations.ExcludeInboundPorts: "1"},
			"2 node rules, 62 of " + annotations.Rules + " and 1 Istio exclusions"},
	} {
		_, err := Build(Node{Rules: rules.Default(), SidecarUID: 1337}, tc.ann)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%v) = %v, want an error naming %q", tc.ann, err, tc.want)
		}
	}
	// 64 rules in all is fine.
	if _, err := Build(Node{Rules: rules.Default(), SidecarUID: 1337}, map[string]string{annotations.Rules: strings.Repeat("chain -p 1 -j ACCEPT\n", 62)}); err != nil {
		t.Errorf("64 rules: %v", err)
	}
}

// Errors say which annotation and which item, as values callers branch on:
// mesh-accelctl places the item in the manifest, and words the limit.
func TestErrorValues(t *testing.T) {
	_, err := Build(Node{}, map[string]string{annotations.ExcludeInboundPorts: "80, http ,90"})
	var ae *AnnotationError
	if !errors.As(err, &ae) || ae.Name != annotations.ExcludeInboundPorts || ae.Item != "http" {
		t.Errorf("bad port: %#v", err)
	}
	_, err = Build(Node{Rules: rules.Default()}, map[string]string{annotations.Profile: annotations.ProfileSidecarHops,
		annotations.Rules: strings.Repeat("chain -p 1 -j ACCEPT\n", 63), annotations.ExcludeOutboundIPRanges: "*"})
	var le *LimitError
	if !errors.As(err, &le) || le.Node != 1 || le.Own != 63 || le.Exclusions != 2 {
		t.Errorf("too many rules: %#v", err)
	}
}

// Exclusions are RETURN rules as package rules parses them: an address is
// its /32 or /128, an IPv4-mapped prefix the IPv4 prefix it covers, each
// once; the defaults: the sidecar uid and the quota of package bpf.
func TestExclusionValues(t *testing.T) {
	cfg, err := Build(Node{}, map[string]string{annotations.ExcludeOutboundIPRanges: "::ffff:10.0.0.0/104, 10.0.0.0/8, fd00::1"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := rules.ParseString("want", "chain --ip 10.0.0.0/8 -j RETURN\nchain --ip fd00::1/128 -j RETURN")
	if !cfg.Rules.Equal(want) || cfg.SidecarUID != nodestate.DefaultSidecarUID || cfg.Quota != bpf.DefaultPodQuota {
		t.Errorf("got %+v, want rules\n%v and the defaults", cfg, want)
	}
}
