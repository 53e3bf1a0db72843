package ctltest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

func contextAfter(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func ruleFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.rules")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The rules in force of a pod, as the kernel holds them.
func (e *env) rulesOf(name string) *rules.Set {
	e.t.Helper()
	pods, err := e.node.Pods()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range pods {
		if p.ID == e.uids[name] {
			return p.Config.Rules
		}
	}
	e.t.Fatalf("pod %s not attached", name)
	return nil
}

// A bad file changes nothing; apply swaps the rules in force, per pod or
// everywhere, keeping each pod's other settings; the kernel judges new
// connections by them at once.
func TestRulesApply(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	if err := e.node.SetPodEnabled(e.uids["b"], false); err != nil {
		t.Fatal(err)
	}

	bad := ruleFile(t, "chain --uid-owner 1337 -j ACCEPT\nchain -p 15006 -j REJECT\n")
	for _, args := range [][]string{{"rules", "check", "-f", bad}, {"rules", "apply", "-f", bad, "--all"},
		{"rules", "apply", "-f", bad, "--pod", "shop/a"}} {
		r := e.ctl(args...)
		if r.code != ctl.ExitError || !strings.Contains(r.stderr, bad+":2:19: ") {
			t.Errorf("%v: exit %d, stderr %q", args, r.code, r.stderr)
		}
	}
	if !e.rulesOf("a").Equal(&rules.Set{}) || !e.rulesOf("b").Equal(&rules.Set{}) {
		t.Fatal("a bad file changed the rules")
	}

	// Nothing is accelerated: no ACCEPT rule matches the pods' traffic.
	none := ruleFile(t, "chain --port 1-65535 -j RETURN\n")
	if out := e.ok("rules", "check", "-f", none); !strings.Contains(out, "warning: no ACCEPT rule") {
		t.Errorf("rules check: %s", out)
	}
	e.ok("rules", "apply", "-f", none, "--pod", "shop/a")
	want, _ := rules.ParseString("x", "chain --port 1-65535 -j RETURN\n")
	if !e.rulesOf("a").Equal(want) || !e.rulesOf("b").Equal(&rules.Set{}) {
		t.Fatalf("apply --pod shop/a: a %v, b %v", e.rulesOf("a"), e.rulesOf("b"))
	}
	before, _ := e.node.Counters()
	e.ok("enable", "--pod", "shop/b")
	e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20})
	e.waitNoConns()
	after, _ := e.node.Counters()
	if d := after.Sub(before); d["connections_accepted"] != 1 || d["rejected_rules"] != 2 {
		// The hops in pod a are refused by its rules; b's own hop is not.
		t.Errorf("with a's rules refusing everything: %v", d)
	}
	e.ok("disable", "--pod", "shop/b")

	// --all: every pod, keeping TrustApp and the switch.
	def := ruleFile(t, rules.Default().String())
	var res struct{ Pods []string }
	e.json(&res, "rules", "apply", "-f", def, "--all")
	if len(res.Pods) != 2 {
		t.Errorf("apply to every pod: %+v", res)
	}
	pods, _ := e.node.Pods()
	for _, p := range pods {
		if !p.Config.Rules.Equal(rules.Default()) || !p.Config.TrustApp || p.Config.Disabled != (p.ID == e.uids["b"]) {
			t.Errorf("pod %s after apply: %+v", p.ID, p.Config)
		}
	}
	var shown []struct {
		Name    string
		Enabled bool
		Rules   []string
	}
	e.json(&shown, "rules", "show", "-n", "shop", "b")
	if len(shown) != 1 || shown[0].Name != "shop/b" || shown[0].Enabled || len(shown[0].Rules) != 2 {
		t.Errorf("rules show --pod shop/b: %+v", shown)
	}
	if out := e.ok("rules", "show"); strings.Count(out, "chain --port 15006 -j RETURN") != 2 {
		t.Errorf("rules show:\n%s", out)
	}
}

// --dry-run prints each pod's change as -/+ lines and leaves the node
// state as it was.
func TestRulesApplyDryRun(t *testing.T) {
	e := newEnv(t)
	e.pod("a", oneWayCfg)
	e.pod("b", trustedAll)
	before, err := e.node.Pods()
	if err != nil {
		t.Fatal(err)
	}
	file := ruleFile(t, "chain --uid-owner 1337 -j ACCEPT\nchain --port 9090 -j RETURN\n")
	out := e.ok("rules", "apply", "--all", "--dry-run", "-f", file)
	for _, want := range []string{"would change the rules of 2 pods (nothing was applied)",
		"--- shop/a (rules in force)\n+++ shop/a (rules of " + file + ")\n chain --uid-owner 1337 -j ACCEPT\n" +
			"-chain --port 15006 -j RETURN\n+chain --port 9090 -j RETURN\n",
		"--- shop/b (rules in force)\n+++ shop/b (rules of " + file + ")\n+chain --uid-owner 1337 -j ACCEPT\n" +
			"+chain --port 9090 -j RETURN\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	after, err := e.node.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d pods after the dry run, %d before", len(after), len(before))
	}
	for i := range before {
		b, a := before[i].Config, after[i].Config
		if !a.Rules.Equal(b.Rules) || a.TrustApp != b.TrustApp || a.OneWay() != b.OneWay() || a.Disabled != b.Disabled {
			t.Errorf("pod %s changed by a dry run: %+v, was %+v", before[i].ID, a, b)
		}
	}
	if r := e.ctl("rules", "apply", "-f", file); r.code != ctl.ExitUsage || !strings.Contains(r.stderr, "--all") {
		t.Errorf("apply without a pod or --all: exit %d, %s", r.code, r.stderr)
	}
}
