package ctl

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// apply needs a pod or --all; it never updates every pod by default.
func TestRulesApplyScope(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-f", "-"}, "name the pod (NAME -n NAMESPACE, or --pod), or give --all for every attached pod"},
		{[]string{"-f", "-", "--all", "--pod", "shop/cart"}, "--all and pod shop/cart: give one"},
		{[]string{"-f", "-", "--all", "-n", "shop", "cart"}, "--all and pod shop/cart: give one"},
		{[]string{"--all"}, "--file FILE is required (- reads stdin)"},
	} {
		eng := newFakeEngine()
		r := runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: goodRules}, append([]string{"rules", "apply"}, tc.args...)...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) || len(eng.calls) != 0 {
			t.Errorf("%q: exit %d, stderr %q, calls %q; want a usage error %q", tc.args, r.code, r.stderr, eng.calls, tc.want)
		}
	}
}

// --dry-run prints each pod's change and changes nothing.
func TestRulesApplyDryRun(t *testing.T) {
	eng := newFakeEngine()
	before, _ := eng.Pods()
	in := "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\n" // shop/cart's rules already
	r := runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: in}, "rules", "apply", "--all", "--dry-run", "-f", "-", "-o", "json")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if len(eng.calls) != 0 {
		t.Errorf("dry run changed the engine: %q", eng.calls)
	}
	after, _ := eng.Pods()
	for i := range before {
		if !after[i].Config.Rules.Equal(before[i].Config.Rules) {
			t.Errorf("dry run changed the rules of %s", after[i].ID)
		}
	}
	var res applyResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	want := []podChange{{Pod: "shop/pay", ID: "uid-b", Diff: []string{"+chain --uid-owner 1337 -j ACCEPT", "+chain --port 15006 -j RETURN"}}}
	if !res.DryRun || !slices.Equal(res.Pods, []string{"shop/cart", "shop/pay"}) || len(res.Changes) != 1 ||
		res.Changes[0].Pod != want[0].Pod || !slices.Equal(res.Changes[0].Diff, want[0].Diff) {
		t.Errorf("dry run result %+v, want changes %+v", res, want)
	}
	out := mustRunStdin(t, eng, in, "rules", "apply", "-n", "shop", "cart", "--dry-run", "-f", "-")
	if !strings.Contains(out, "would change the rules of 0 pods") || !strings.Contains(out, "shop/cart: no change") {
		t.Errorf("dry run without change:\n%s", out)
	}
}

func mustRunStdin(tb testing.TB, eng Engine, stdin string, args ...string) string {
	tb.Helper()
	r := runWith(tb, ctlRun{eng: eng, stateDir: defaultRecords(tb), stdin: stdin}, args...)
	if r.code != ExitOK {
		tb.Fatalf("mesh-accelctl %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

func TestDiffRules(t *testing.T) {
	for _, tc := range []struct {
		old, new, want []string
	}{
		{[]string{"a", "b"}, []string{"a", "b"}, nil},
		{nil, nil, nil},
		{nil, []string{"a"}, []string{"+a"}},
		{[]string{"a"}, nil, []string{"-a"}},
		{[]string{"a", "b", "c"}, []string{"a", "x", "c"}, []string{" a", "-b", "+x", " c"}},
		{[]string{"a", "b"}, []string{"b", "a"}, []string{"-a", " b", "+a"}},
		{[]string{"a", "b", "c"}, []string{"b", "c", "d"}, []string{"-a", " b", " c", "+d"}},
	} {
		if got := diffRules(tc.old, tc.new); !slices.Equal(got, tc.want) {
			t.Errorf("diffRules(%q, %q) = %q, want %q", tc.old, tc.new, got, tc.want)
		}
	}
}

// apply takes complete rule sets: a rule file or a ConfigMap, not a pod's
// annotation (the plugin merges those with the node's rules).
func TestRulesApplySources(t *testing.T) {
	cm := configMap("    chain -u 1337 -j ACCEPT\n")
	eng := newFakeEngine()
	r := runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: cm}, "rules", "apply", "--all", "-f", "-")
	if r.code != ExitOK || len(eng.calls) != 2 || eng.pods[0].Config.Rules.String() != "chain --uid-owner 1337 -j ACCEPT\n" {
		t.Errorf("apply a ConfigMap: exit %d, calls %q, stderr %q", r.code, eng.calls, r.stderr)
	}
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n" +
		"    accel.mesh/rules: |\n      chain -p 80 -j RETURN\n"
	eng = newFakeEngine()
	r = runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: pod}, "rules", "apply", "--all", "-f", "-")
	if r.code != ExitError || len(eng.calls) != 0 ||
		!strings.Contains(r.stderr, "<stdin> holds the annotation accel.mesh/rules of Pod shop/web: a pod's own rules") {
		t.Errorf("apply an annotation: exit %d, calls %q, stderr %q", r.code, eng.calls, r.stderr)
	}
}
