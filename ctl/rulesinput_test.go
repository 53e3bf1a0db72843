package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// rules check reads ConfigMaps and annotated manifests, and its errors
// point into the file given.
func TestRulesCheckManifests(t *testing.T) {
	pod := func(ann string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n" + ann +
			"spec:\n  containers: []\n"
	}
	deploy := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    metadata:\n" +
		"      annotations:\n        accel.mesh/enabled: \"true\"\n        accel.mesh/rules: |\n" +
		"          chain --port 8080 -j RETURN\n          chain -u 1337 -j ACCEPT --ip 10.0.0.0/8 --ip 10.1.0.0/16\n"
	many := "    accel.mesh/rules: |\n" + strings.Repeat("      chain -p 80 -j RETURN\n", 60)
	for _, tc := range []struct {
		name, content string
		args          []string
		code          int
		want          string // in stderr, or stdout when the code is 0
	}{
		{"the repository's ConfigMap", readRepoFile(t, "../manifests/configmap.yaml"), nil, ExitOK,
			"(ConfigMap mesh-accel/mesh-accel-rules, data.rules): 2 rules, valid"},
		{"ConfigMap error", configMap("    chain -u 1337 -j ACCEPT\n\n    chain --ip 10.0.0.0/8 --ip 10.1.0.0/16 -j RETURN\n"),
			nil, ExitError, "cm.yaml:12:27: repeated option --ip"},
		{"ConfigMap warning names the file's line", configMap("    chain -u 1337 -j ACCEPT\n    chain -u 1337 -j ACCEPT\n"),
			nil, ExitOK, "warning: $DIR/cm.yaml:11: rule repeats the rule at $DIR/cm.yaml:10"},
		{"ConfigMap in a list of documents", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\n" +
			configMap("    chain -j accept\n"), nil, ExitError, "cm.yaml:15:14: unknown target"},
		{"pod annotation", pod("    accel.mesh/rules: \"chain --port=80 -j RETURN\"\n"), nil, ExitError,
			"cm.yaml:7:7: option --port and its value must be separated by a space"},
		{"workload template annotation", deploy, nil, ExitError, "cm.yaml:12:51: repeated option --ip, first given at column 35"},
		{"annotation counted with the node rules and exclusions", pod(many +
			"    traffic.sidecar.istio.io/excludeOutboundPorts: \"9000, 9001,9000\"\n" +
			"    traffic.sidecar.istio.io/excludeOutboundIPRanges: \"10.0.0.0/8\"\n"), nil, ExitError,
			"cm.yaml:8:1: too many rules for the pod: 2 default node rules + 60 of accel.mesh/rules + 3 Istio exclusions = 65, the BPF rule table holds 64\n    hint: the 64 rules of a pod are shared"},
		{"annotation within the limit", pod(many), nil, ExitOK, "60 rules, valid"},
		{"profile sidecar-hops counts one node rule", pod(many + "    accel.mesh/profile: sidecar-hops\n" +
			"    traffic.sidecar.istio.io/excludeInboundPorts: \"1,2,3\"\n"), nil, ExitOK, "60 rules, valid"},
		{"--annotation on a rule text", strings.Repeat("chain -p 80 -j RETURN\n", 63), []string{"--annotation"}, ExitError,
			"2 default node rules + 63 of accel.mesh/rules + 0 Istio exclusions = 65"},
		{"--annotation with --node-rules", "chain -p 80 -j RETURN\n", []string{"--annotation", "--node-rules", "$DIR/nosuch"},
			ExitError, "--node-rules: read rules: open $DIR/nosuch"},
		{"--node-rules from a ConfigMap", strings.Repeat("chain -p 80 -j RETURN\n", 61), []string{"--annotation", "--node-rules",
			"../manifests/configmap.yaml"}, ExitOK, "61 rules, valid"},
		{"--node-rules from a ConfigMap, over", strings.Repeat("chain -p 80 -j RETURN\n", 63), []string{"--annotation",
			"--node-rules", "../manifests/configmap.yaml"}, ExitError, "2 node rules (../manifests/configmap.yaml) + 63 of"},
		{"manifest without rules", pod("    a: b\n"), nil, ExitError,
			"cm.yaml holds no rules: want a ConfigMap with data.rules, or an object annotated accel.mesh/rules"},
		{"YAML that is no manifest is a rule file", "foo: bar\n", nil, ExitError, `cm.yaml:1:1: rule must start with "chain"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFileIn(t, dir, "cm.yaml", tc.content)
			args := append([]string{"rules", "check", "-f", path}, tc.args...)
			for i := range args {
				args[i] = strings.ReplaceAll(args[i], "$DIR", dir)
			}
			r := runCtl(t, nil, "", args...)
			out := strings.ReplaceAll(map[bool]string{true: r.stdout, false: r.stderr}[tc.code == ExitOK], dir, "$DIR")
			if r.code != tc.code || !strings.Contains(out, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, tc.want)
			}
		})
	}
}

// rules check counts a pod's rules as the plugin builds them: under the
// sidecar-hops profile, the node's RETURN rules stay.
func TestRulesCheckProfileKeepsNodeReturns(t *testing.T) {
	dir := t.TempDir()
	node := writeFileIn(t, dir, "node", "chain -u 1337 -j ACCEPT\nchain -p 15006 -j RETURN\n"+
		"chain -p 9997 -j RETURN\nchain -p 9998 -j RETURN\nchain -p 9999 -j RETURN\n")
	pod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  annotations:\n    accel.mesh/profile: sidecar-hops\n" +
		"    accel.mesh/rules: |\n" + strings.Repeat("      chain -p 80 -j RETURN\n", 61) + "spec:\n  containers: []\n"
	path := writeFileIn(t, dir, "pod.yaml", pod)
	r := runCtl(t, nil, "", "rules", "check", "-f", path, "--node-rules", node)
	want := "too many rules for the pod: 4 rules of profile sidecar-hops"
	if r.code != ExitError || !strings.Contains(r.stderr, want) {
		t.Errorf("exit %d, stdout %.80q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, ExitError, want)
	}
}

// -f - reads stdin, for check and apply.
func TestRulesFromStdin(t *testing.T) {
	r := runWith(t, ctlRun{stdin: goodRules}, "rules", "check", "-f", "-")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, "<stdin>: 2 rules, valid") {
		t.Errorf("check -f -: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	eng := newFakeEngine()
	r = runWith(t, ctlRun{eng: eng, stateDir: defaultRecords(t), stdin: "chain -p 80 -j ACCEPT\n"}, "rules", "apply", "-f", "-", "--all")
	if r.code != ExitOK || len(eng.calls) != 2 || eng.pods[1].Config.Rules.String() != "chain --port 80 -j ACCEPT\n" {
		t.Errorf("apply -f -: exit %d, calls %q, stderr %q", r.code, eng.calls, r.stderr)
	}
}

// With -o json or yaml, check prints its errors on stdout and exits 1.
func TestRulesCheckStructuredErrors(t *testing.T) {
	for _, format := range []string{"json", "yaml"} {
		r := runWith(t, ctlRun{stdin: "chain -p 0 -j ACCEPT\nchain --ip 1.2.3.4 --ip 5.6.7.8 -j RETURN\n"},
			"rules", "check", "-f", "-", "-o", format)
		if r.code != ExitError || r.stderr != "" {
			t.Errorf("%s: exit %d, stderr %q", format, r.code, r.stderr)
		}
		if format == "yaml" {
			if !strings.Contains(r.stdout, "valid: false") || !strings.Contains(r.stdout, "hint: 'one CIDR per rule") {
				t.Errorf("yaml: %s", r.stdout)
			}
			continue
		}
		var res checkResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		if res.Valid || len(res.Errors) != 2 || res.Errors[1] != (checkError{"<stdin>", 2, 20, "--ip",
			"repeated option --ip, first given at column 7", "one CIDR per rule: write one chain line per CIDR"}) {
			t.Errorf("json: %+v", res)
		}
	}
	if r := runWith(t, ctlRun{stdin: goodRules}, "rules", "check", "-f", "-", "-o", "json"); r.code != ExitOK ||
		!strings.Contains(r.stdout, `"valid": true`) {
		t.Errorf("valid rules: exit %d, %s", r.code, r.stdout)
	}
}

func writeFileIn(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	return p
}

func readRepoFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
