package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeFile(tb testing.TB, name, content string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

const goodRules = "# sidecar only\nchain --uid-owner 1337 -j ACCEPT\nchain -p 15006 -j RETURN\n"

func TestRulesCheck(t *testing.T) {
	good := writeFile(t, "good.rules", goodRules)
	out := mustRun(t, nil, "", "rules", "check", "-f", good)
	for _, want := range []string{good + ": 2 rules, valid", "chain --uid-owner 1337 -j ACCEPT", "chain --port 15006 -j RETURN"} {
		if !strings.Contains(out, want) {
			t.Errorf("output %q lacks %q", out, want)
		}
	}
	var res checkResult
	if err := json.Unmarshal([]byte(mustRun(t, nil, "", "rules", "check", "-f", good, "-o", "json")), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Rules) != 2 || len(res.Warnings) != 0 {
		t.Errorf("check result %+v", res)
	}
	warn := writeFile(t, "warn.rules", "chain -p 80 -j RETURN\n")
	if out := mustRun(t, nil, "", "rules", "check", "-f", warn); !strings.Contains(out, "warning: no ACCEPT rule") {
		t.Errorf("no warning in %q", out)
	}
}

// A bad file changes nothing, exits 1 and names file:line:column.
func TestRulesBadFileChangesNothing(t *testing.T) {
	bad := writeFile(t, "bad.rules", "chain --uid-owner 1337 -j ACCEPT\nchain --port 99999 -j RETURN\n")
	for _, args := range [][]string{
		{"rules", "check", "-f", bad},
		{"rules", "apply", "-f", bad, "--all"},
		{"rules", "apply", "-f", bad, "--pod", "shop/cart"},
		{"rules", "apply", "-f", bad, "-n", "shop", "cart", "--dry-run"},
	} {
		eng := newFakeEngine()
		before, _ := eng.Pods()
		r := runCtl(t, eng, defaultRecords(t), args...)
		if r.code != ExitError {
			t.Errorf("%v: exit %d, want %d", args, r.code, ExitError)
		}
		if want := bad + ":2:14: "; !strings.Contains(r.stderr, want) {
			t.Errorf("%v: stderr %q does not name %s", args, r.stderr, want)
		}
		if len(eng.calls) != 0 {
			t.Errorf("%v: engine changed: %q", args, eng.calls)
		}
		after, _ := eng.Pods()
		for i := range before {
			if !after[i].Config.Rules.Equal(before[i].Config.Rules) {
				t.Errorf("%v: rules of %s changed", args, after[i].ID)
			}
		}
	}
}

// apply swaps the rules and keeps the rest of each pod's configuration.
func TestRulesApply(t *testing.T) {
	good := writeFile(t, "good.rules", goodRules)
	for _, tc := range []struct {
		args  []string
		calls []string
	}{
		{[]string{"-f", good, "--all"}, []string{"UpdatePod(uid-a)", "UpdatePod(uid-b)"}},
		{[]string{"-f", good, "--pod", "shop/pay"}, []string{"UpdatePod(uid-b)"}},
		{[]string{"-f", good, "-n", "shop", "pay"}, []string{"UpdatePod(uid-b)"}},
		{[]string{"pay", "-f", good, "--namespace=shop"}, []string{"UpdatePod(uid-b)"}},
	} {
		eng := newFakeEngine()
		before, _ := eng.Pods()
		out := mustRun(t, eng, defaultRecords(t), append([]string{"rules", "apply", "-o", "json"}, tc.args...)...)
		if !slices.Equal(eng.calls, tc.calls) {
			t.Errorf("%v: calls %q, want %q", tc.args, eng.calls, tc.calls)
		}
		var res applyResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Pods) != len(tc.calls) || len(res.Rules) != 2 {
			t.Errorf("%v: result %+v", tc.args, res)
		}
		after, _ := eng.Pods()
		for i, p := range after {
			changed := slices.Contains(tc.calls, "UpdatePod("+p.ID+")")
			b := before[i].Config
			if p.Config.TrustApp != b.TrustApp || p.Config.SidecarUID != b.SidecarUID || p.Config.Disabled != b.Disabled {
				t.Errorf("%v: pod %s lost its settings: %+v, was %+v", tc.args, p.ID, p.Config, b)
			}
			if got := len(p.Config.Rules.Rules); changed && got != 2 {
				t.Errorf("%v: pod %s has %d rules, want 2", tc.args, p.ID, got)
			}
			if !changed && !p.Config.Rules.Equal(b.Rules) {
				t.Errorf("%v: pod %s changed without being named", tc.args, p.ID)
			}
		}
	}
}

func TestRulesApplyNoPods(t *testing.T) {
	eng := newFakeEngine()
	eng.pods = nil
	r := runCtl(t, eng, "", "rules", "apply", "--all", "-f", writeFile(t, "r", goodRules))
	if r.code != ExitOK || !strings.Contains(r.stderr, "no pod is attached") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestRulesShow(t *testing.T) {
	eng := newFakeEngine()
	out := mustRun(t, eng, defaultRecords(t), "rules", "show")
	want := `POD        STATE     RULE
shop/cart  enabled   chain --uid-owner 1337 -j ACCEPT
shop/cart  enabled   chain --port 15006 -j RETURN
shop/pay   DISABLED  (none: every connection is accelerated)
`
	if out != want {
		t.Errorf("rules show:\n%s\nwant:\n%s", out, want)
	}
	var pods []podReport
	if err := json.Unmarshal([]byte(mustRun(t, eng, "", "rules", "show", "--pod", "uid-b", "-o", "json")), &pods); err != nil {
		t.Fatal(err)
	}
	if len(pods) != 1 || pods[0].ID != "uid-b" || pods[0].Name != "uid-b" || pods[0].Enabled || pods[0].Rules == nil {
		t.Errorf("rules show --pod uid-b: %+v", pods)
	}
}
