package ctl

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/podconfig"
)

// podYAML is a pod manifest with the given (indented) annotations.
func podYAML(ann string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\n  annotations:\n" + ann +
		"spec:\n  containers: []\n"
}

// rules check validates mesh-accel's own annotations as the plugin reads
// them, naming file:line:column: an unknown name with the closest known
// one, a value the plugin refuses or ignores with the valid values, a
// value that is not a string. A pod without rules of its own is checked
// too.
func TestRulesCheckAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name, ann string
		code      int
		want      []string // in stderr, or stdout when the code is 0
	}{
		{"unknown name", "    accel.mesh/enable: \"true\"\n", ExitError, []string{
			`pod.yaml:7:5: unknown annotation accel.mesh/enable: the CNI plugin ignores it (at "accel.mesh/enable")`,
			"hint: did you mean accel.mesh/enabled? mesh-accel's annotations are accel.mesh/enabled, accel.mesh/profile, " +
				"accel.mesh/app-reads-with-recvmsg or accel.mesh/rules"}},
		{"unknown name, far from any", "    accel.mesh/turbo: \"on\"\n", ExitError, []string{
			"unknown annotation accel.mesh/turbo", "hint: mesh-accel's annotations are accel.mesh/enabled"}},
		{"profile typo", "    accel.mesh/enabled: \"true\"\n    accel.mesh/profile: sidecar-hop\n", ExitError, []string{
			`pod.yaml:8:25: annotation accel.mesh/profile: "sidecar-hop" is not a valid value; valid values: "default", "sidecar-hops"`,
			`hint: did you mean "sidecar-hops"?`}},
		{"enabled not a boolean", "    accel.mesh/enabled: \"yes\"\n", ExitError, []string{
			`pod.yaml:7:25: annotation accel.mesh/enabled: "yes" is not a valid value; valid values: "true", "false"`,
			`hint: the CNI plugin accelerates the pod only for "true"`}},
		{"trust not a boolean", "    accel.mesh/app-reads-with-recvmsg: \"True\"\n", ExitError, []string{
			`annotation accel.mesh/app-reads-with-recvmsg: "True" is not a valid value`}},
		{"not a string", "    accel.mesh/enabled: true\n", ExitError, []string{
			`pod.yaml:7:25: accel.mesh/enabled: the value must be a string (at "true")`, `hint: quote it: "true"`}},
		{"errors in annotations and rules, in file order", "    accel.mesh/rules: \"chain -p 0 -j ACCEPT\"\n" +
			"    accel.mesh/enabel: \"true\"\n", ExitError, []string{
			"pod.yaml:7:10: port out of range", "pod.yaml:8:5: unknown annotation accel.mesh/enabel"}},
		{"an exclusion's item the plugin refuses", "    traffic.sidecar.istio.io/excludeInboundPorts: \"80, http\"\n" +
			"    traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.0.0.0/33\n", ExitError, []string{
			`pod.yaml:7:56: annotation traffic.sidecar.istio.io/excludeInboundPorts: "http" is not a port (1-65535) (at "http")`,
			`pod.yaml:8:55: annotation traffic.sidecar.istio.io/excludeOutboundIPRanges: "10.0.0.0/33" is not a CIDR`,
			"hint: the CNI plugin refuses to set the pod up"}},
		{"exclusions the plugin takes", "    accel.mesh/enabled: \"true\"\n    traffic.sidecar.istio.io/excludeOutboundIPRanges: \"*, 10.1.2.3\"\n", ExitOK,
			[]string{"no rules of its own (the node's rules apply), valid"}},
		{"other annotations are not ours", "    istio.io/rev: canary\n    accel.mesh/enabled: \"true\"\n", ExitOK, []string{
			"pod.yaml (annotations of Pod shop/web): no rules of its own (the node's rules apply), valid"}},
		{"valid, with rules", "    accel.mesh/enabled: \"true\"\n    accel.mesh/profile: \"sidecar-hops\"\n" +
			"    accel.mesh/rules: \"chain -p 8080 -j RETURN\"\n", ExitOK, []string{
			"pod.yaml (annotation accel.mesh/rules of Pod shop/web): 1 rules, valid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := writeFileIn(t, dir, "pod.yaml", podYAML(tc.ann))
			r := runCtl(t, nil, "", "rules", "check", "-f", path)
			out := strings.ReplaceAll(map[bool]string{true: r.stdout, false: r.stderr}[tc.code == ExitOK], dir+"/", "")
			for _, want := range tc.want {
				if r.code != tc.code || !strings.Contains(out, want) {
					t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", r.code, r.stdout, r.stderr, tc.code, want)
				}
			}
			if tc.name == "errors in annotations and rules, in file order" &&
				strings.Index(out, "pod.yaml:7:") > strings.Index(out, "pod.yaml:8:") {
				t.Errorf("errors out of order:\n%s", out)
			}
		})
	}
	// Workload templates, and -o json.
	deploy := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  template:\n" +
		"    metadata:\n      annotations:\n        accel.mesh/enable: \"true\"\n"
	r := runWith(t, ctlRun{stdin: deploy}, "rules", "check", "-f", "-", "-o", "json")
	var res checkResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if r.code != ExitError || res.Valid || len(res.Errors) != 1 || res.Errors[0].Line != 10 || res.Errors[0].Column != 9 ||
		res.Errors[0].Token != "accel.mesh/enable" || !strings.HasPrefix(res.Errors[0].Hint, "did you mean accel.mesh/enabled?") {
		t.Errorf("deployment -o json: exit %d, %+v", r.code, res)
	}
}

// A ConfigMap's enabled key must be a boolean, as the installers read it.
func TestRulesCheckConfigMapSwitch(t *testing.T) {
	cm := func(enabled string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mesh-accel-rules\n  namespace: mesh-accel\ndata:\n" +
			"  enabled: " + enabled + "\n  rules: |\n    chain -u 1337 -j ACCEPT\n"
	}
	for enabled, want := range map[string]string{
		`"false"`: "",
		`"true"`:  "",
		`"yes"`:   `cm.yaml:7:12: data.enabled: "yes" is neither "true" nor "false"`,
		`false`:   `cm.yaml:7:12: data.enabled: the value must be a string`,
		`""`:      `data.enabled: "" is neither`,
	} {
		r := runWith(t, ctlRun{}, "rules", "check", "-f", writeFileIn(t, t.TempDir(), "cm.yaml", cm(enabled)))
		switch {
		case want == "" && r.code != ExitOK:
			t.Errorf("enabled: %s: exit %d, %s", enabled, r.code, r.stderr)
		case want != "" && (r.code != ExitError || !strings.Contains(r.stderr, want) ||
			strings.Contains(want, "neither") && !strings.Contains(r.stderr, "mesh_accel_configmap_enabled_invalid")):
			t.Errorf("enabled: %s: exit %d, stderr %q; want %q", enabled, r.code, r.stderr, want)
		}
	}
}

// A ConfigMap without rules still gets its switch key checked.
func TestRulesCheckConfigMapSwitchOnly(t *testing.T) {
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: mesh-accel-rules\ndata:\n  enabled: \"no\"\n"
	r := runWith(t, ctlRun{stdin: cm}, "rules", "check", "-f", "-")
	if r.code != ExitError || !strings.Contains(r.stderr, `<stdin>:6:12: data.enabled: "no" is neither "true" nor "false"`) {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	r = runWith(t, ctlRun{stdin: strings.Replace(cm, `"no"`, `"false"`, 1)}, "rules", "check", "-f", "-")
	if r.code != ExitError || !strings.Contains(r.stderr, "holds no rules") {
		t.Errorf("a good switch key and no rules: exit %d, stderr %q", r.code, r.stderr)
	}
}

// A pod's own rules follow the node's: check warns "no ACCEPT rule" only
// when neither has one, and never "no rules" for a pod that has none of
// its own.
func TestRulesCheckPodWarnings(t *testing.T) {
	dir := t.TempDir()
	returnsOnly := writeFileIn(t, dir, "node.rules", "chain -p 15006 -j RETURN\n")
	own := "    accel.mesh/rules: \"chain -p 8080 -j RETURN\"\n"
	for _, tc := range []struct {
		name, ann string
		args      []string
		warn      bool
	}{
		{"the default node rules accept", own, nil, false},
		{"the profile's rules accept", own + "    accel.mesh/profile: sidecar-hops\n", []string{"--node-rules", returnsOnly}, false},
		{"node rules without ACCEPT", own, []string{"--node-rules", returnsOnly}, true},
		{"no rules of its own", "    accel.mesh/enabled: \"true\"\n", nil, false},
		{"no rules of its own, node rules without ACCEPT", "    accel.mesh/enabled: \"true\"\n", []string{"--node-rules", returnsOnly}, true},
	} {
		path := writeFileIn(t, t.TempDir(), "pod.yaml", podYAML(tc.ann))
		out := mustRun(t, nil, "", append([]string{"rules", "check", "-f", path}, tc.args...)...)
		if got := strings.Contains(out, "warning: no ACCEPT rule"); got != tc.warn || strings.Contains(out, "warning: no rules") {
			t.Errorf("%s: %s", tc.name, out)
		}
	}
	// --annotation on a rule text counts as the pod's rules too.
	r := runWith(t, ctlRun{stdin: "chain -p 8080 -j RETURN\n"}, "rules", "check", "--annotation", "-f", "-")
	if r.code != ExitOK || strings.Contains(r.stdout, "warning") {
		t.Errorf("--annotation: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// A node's rule file still gets the warning.
	if out := mustRun(t, nil, "", "rules", "check", "-f", returnsOnly); !strings.Contains(out, "warning: no ACCEPT rule") {
		t.Errorf("node rules without ACCEPT: %s", out)
	}
}

// The annotations rules check knows are those the CNI plugin reads
// (package podconfig): each, given a value the plugin refuses, is an
// error naming it, and no other annotation under accel.mesh/ is accepted.
func TestKnownAnnotationsArePlugins(t *testing.T) {
	for _, name := range podconfig.Annotations() {
		r := runWith(t, ctlRun{stdin: podYAML("    " + name + ": \"nonsense!\"\n")}, "rules", "check", "-f", "-")
		if r.code != ExitError || !strings.Contains(r.stderr, name) {
			t.Errorf("%s: nonsense!: exit %d, %q", name, r.code, r.stderr)
		}
	}
	for _, name := range annotations.Known() {
		if !slices.Contains(podconfig.Annotations(), name) {
			t.Errorf("annotations.Known() has %s, which the plugin does not read", name)
		}
	}
}
