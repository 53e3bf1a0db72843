package sim

import (
	"regexp"
	"strings"
	"testing"
)

var counterRE = regexp.MustCompile(`\[\d+:\d+\]`)

// savedNat returns a pod's nat table as iptables-save prints it, normalized.
func savedNat(t *testing.T, p *Pod, v6 bool) string {
	t.Helper()
	cmd := map[bool]string{false: "iptables-save", true: "ip6tables-save"}[v6]
	out, err := inNetns(p.node.nsenter, p.Netns, "", cmd, "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	return normalize(out)
}

// normalize drops comments, counters and blank space from iptables-save or
// iptables-restore text.
func normalize(rules string) string {
	var lines []string
	for line := range strings.Lines(rules) {
		line = strings.TrimSpace(counterRE.ReplaceAllString(line, ""))
		if line != "" && !strings.HasPrefix(line, "#") {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}

// TestSetSidecarRules: the installed rules are exactly Istio's (both
// families), and switching them off and on changes the path live.
func TestSetSidecarRules(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	a := n.AddTestPod(t, PodOptions{Name: "a", Sidecar: true})
	b := n.AddTestPod(t, PodOptions{Name: "b", Sidecar: true})
	c := n.AddTestPod(t, PodOptions{Name: "c"})
	for _, v6 := range []bool{false, true} {
		if got, want := savedNat(t, b, v6), normalize(istioRules(v6)); got != want {
			t.Errorf("v6=%v: installed rules differ:\n%s\nwant:\n%s", v6, got, want)
		}
	}
	peer := func(v6 bool) string {
		t.Helper()
		r := a.RunTestClient(t, ClientSpec{Mode: ModePeer, Target: b.AppTarget(v6)})
		requireOK(t, r)
		return addrOf(t, r.Peer.Remote).String()
	}
	step := func(what string, aOn, bOn bool, want4, want6 string) {
		t.Helper()
		if err := a.SetSidecarRules(aOn); err != nil {
			t.Fatal(err)
		}
		if err := b.SetSidecarRules(bOn); err != nil {
			t.Fatal(err)
		}
		if got4, got6 := peer(false), peer(true); got4 != want4 || got6 != want6 {
			t.Errorf("%s: app saw %s and %s, want %s and %s", what, got4, got6, want4, want6)
		}
	}
	// (a's rules on and b's off is no state a mesh has: a's Envoy speaks
	// mutual TLS to b, which only b's Envoy understands.)
	step("both off", false, false, a.IPv4.String(), a.IPv6.String())
	step("both on", true, true, "127.0.0.6", "::6")
	if strings.Contains(savedNat(t, c, false), "ISTIO") {
		t.Error("pod without sidecar has Istio rules")
	}
	if err := c.SetSidecarRules(true); err == nil {
		t.Error("rules installed in a pod without sidecar")
	}
	if err := b.SetSidecarRules(false); err != nil {
		t.Fatal(err)
	}
	if got := savedNat(t, b, true); strings.Contains(got, "ISTIO") {
		t.Errorf("rules left after switching off:\n%s", got)
	}
}
