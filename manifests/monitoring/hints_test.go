package monitoring

import (
	"regexp"
	"strings"
	"testing"
)

// alertRules returns the alerts by name.
func alertRules(t *testing.T) map[string]Rule {
	t.Helper()
	pr, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Rule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r
		}
	}
	return out
}

// ctlInPod is mesh-accelctl run in the alert's installer pod: the labels
// namespace and pod are those of the installer of the alert's node (the
// PodMonitor's target), and the image has no shell, so the binary is named
// by its path. Input may be piped into it (exec -i).
var ctlInPod = regexp.MustCompile(`^(.* \| )?kubectl -n \{\{ \$labels\.namespace \}\} exec (-i )?\{\{ \$labels\.pod \}\} -- /mesh-accelctl [a-z]`)

// Every command an alert's description gives works as given: mesh-accelctl
// in the installer pod of the alert's node, kubectl on that pod, never
// wget, a shell or the DaemonSet (whose exec picks any node's pod).
func TestAlertHints(t *testing.T) {
	code := regexp.MustCompile("`([^`]*)`")
	for name, r := range alertRules(t) {
		desc := r.Annotations["description"]
		for _, bad := range []string{"wget", "ds/", "daemonset/", "sh -c", "proxy/readyz"} {
			if strings.Contains(strings.ToLower(desc), bad) {
				t.Errorf("alert %s: the description says %q", name, bad)
			}
		}
		for _, m := range code.FindAllStringSubmatch(desc, -1) {
			cmd := m[1]
			switch {
			case strings.Contains(cmd, "mesh-accelctl") && !ctlInPod.MatchString(cmd):
				t.Errorf("alert %s: `%s` does not run /mesh-accelctl in the alert's installer pod", name, cmd)
			case strings.HasPrefix(cmd, "kubectl ") && strings.Contains(cmd, " logs ") &&
				!strings.Contains(cmd, "logs {{ $labels.pod }}"):
				t.Errorf("alert %s: `%s` reads the logs of another pod than the node's installer", name, cmd)
			}
		}
	}
	if d := alertRules(t)["MeshAccelInstallerNotReady"].Annotations["description"]; !strings.Contains(d, "/mesh-accelctl health") {
		t.Errorf("MeshAccelInstallerNotReady does not give mesh-accelctl health: %s", d)
	}
}

// The alerts on the rules ConfigMap follow the installer's current view,
// not an increase over a window: they clear at the first reading of the
// fixed ConfigMap.
func TestConfigAlertsClear(t *testing.T) {
	rules := alertRules(t)
	for name, metric := range map[string]string{
		"MeshAccelRuleReloadErrors": "mesh_accel_rules_last_reload_successful",
		"MeshAccelSwitchKeyInvalid": "mesh_accel_configmap_enabled_invalid",
	} {
		r, ok := rules[name]
		if !ok {
			t.Errorf("no alert %s", name)
			continue
		}
		names, err := MetricNames(r.Expr)
		if err != nil || len(names) != 1 || names[0] != metric || strings.ContainsAny(r.Expr, "[(") {
			t.Errorf("alert %s: expr %q; want a comparison of %s's current value (no range, no function)", name, r.Expr, metric)
		}
	}
}
