package monitoring

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests"
)

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`up`, "up"},
		{`mesh_accel_ready == 0`, "mesh_accel_ready"},
		{`sum by (namespace, pod, node, reason) (increase(a_total[15m])) > 0`, "a_total"},
		{`sum(rate(a_total{node=~"$node", reason="flow_control"}[$__rate_interval])) by (node)`, "a_total"},
		{`a / on (namespace, pod) group_left (map) b > 0.8`, "a b"},
		{`a * ignoring(le) group_right b`, "a b"},
		{`a and on (pod) b unless c or d`, "a b c d"},
		{`A AND ON (pod) B`, "A B"},
		{`sum without (reason) (a) offset 1h30m`, "a"},
		{`histogram_quantile(0.99, sum by (le) (rate(a_bucket[5m])))`, "a_bucket"},
		{`label_replace(a, "dst", "$1 by x", "src", "(.*)")`, "a"},
		{`count_values('v', a) or vector(1e-3) + 0x1f + .5 + Inf - NaN`, "a"},
		{`a{l="}{[("} # comment b`, "a"},
		{`max_over_time(a[1h:5m]) @ start()`, "a"},
		{"a{l=`x\"y`} + job:rec:rate5m", "a job:rec:rate5m"},
		{`a{l="\"b\""} > bool 1`, "a"},
		{`sum(a{node=~"${node:regex}"}) / ${x}`, "a"},
		{`a{l="x"} /   on(pod)` + "\n" + `  b`, "a b"},
	} {
		got, err := MetricNames(tc.expr)
		if err != nil {
			t.Errorf("MetricNames(%q): %v", tc.expr, err)
			continue
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("MetricNames(%q) = %v, want %s", tc.expr, got, tc.want)
		}
	}
	for _, expr := range []string{`a{l="x}`, `rate(a[5m)`, `a{l="x"`, `label_replace(a, "x)`} {
		if got, err := MetricNames(expr); err == nil {
			t.Errorf("MetricNames(%q) = %v, want an error", expr, got)
		}
	}
}

// Every alert has an expression that names a metric, a for, a severity and
// a summary and description; the alerts cover what operators must hear of.
func TestPrometheusRule(t *testing.T) {
	pr, err := Rules()
	if err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("%s %s, want monitoring.coreos.com/v1 PrometheusRule", pr.APIVersion, pr.Kind)
	}
	seen, used := map[string]bool{}, map[string]bool{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("alert %q: empty or twice", r.Alert)
			}
			seen[r.Alert] = true
			names, err := MetricNames(r.Expr)
			if err != nil || len(names) == 0 {
				t.Errorf("alert %s: expr %q names no metric (%v)", r.Alert, r.Expr, err)
			}
			for _, n := range names {
				used[n] = true
			}
			if d, err := time.ParseDuration(r.For); err != nil || d <= 0 {
				t.Errorf("alert %s: for %q, want a duration", r.Alert, r.For)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) {
				t.Errorf("alert %s: severity %q", r.Alert, r.Labels["severity"])
			}
			if r.Annotations["summary"] == "" || !strings.Contains(r.Annotations["description"], "Fix:") {
				t.Errorf("alert %s: want a summary and a description that says the fix (\"Fix:\")", r.Alert)
			}
		}
	}
	for _, m := range []string{"mesh_accel_ready", "mesh_accel_pod_setup_failures_total", "mesh_accel_map_entries",
		"mesh_accel_map_full_errors_total", "mesh_accel_rules_last_reload_successful", "mesh_accel_conflist_repairs_total",
		"mesh_accel_enabled", "mesh_accel_configmap_enabled_invalid", "container_memory_working_set_bytes"} {
		if !used[m] {
			t.Errorf("no alert on %s", m)
		}
	}
}

// podMonitor is the PodMonitor's fields that the file sets.
type podMonitor struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		PodMetricsEndpoints []struct {
			Port        string `json:"port"`
			Path        string `json:"path"`
			Interval    string `json:"interval"`
			Relabelings []struct {
				SourceLabels []string `json:"sourceLabels"`
				TargetLabel  string   `json:"targetLabel"`
			} `json:"relabelings"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// The PodMonitor selects the DaemonSet's pods and scrapes their port
// "metrics" at /metrics, labelling them with their node.
func TestPodMonitor(t *testing.T) {
	var pm podMonitor
	if err := decodeStrict("podmonitor.yaml", &pm); err != nil {
		t.Fatal(err)
	}
	b, err := manifests.Files.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	if pm.APIVersion != "monitoring.coreos.com/v1" || pm.Kind != "PodMonitor" || pm.Metadata.Namespace != ds.Namespace {
		t.Errorf("%s %s in %q, want monitoring.coreos.com/v1 PodMonitor in %q", pm.APIVersion, pm.Kind, pm.Metadata.Namespace, ds.Namespace)
	}
	sel := pm.Spec.Selector.MatchLabels
	if len(sel) == 0 {
		t.Error("the PodMonitor selects every pod")
	}
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the DaemonSet's pods (%v)", k, v, ds.Spec.Template.Labels)
		}
	}
	ports := map[string]bool{}
	for _, c := range ds.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			ports[p.Name] = true
		}
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 {
		t.Fatalf("%d endpoints, want 1", len(pm.Spec.PodMetricsEndpoints))
	}
	ep := pm.Spec.PodMetricsEndpoints[0]
	if ep.Port != "metrics" || !ports[ep.Port] || ep.Path != "/metrics" {
		t.Errorf("endpoint port %q path %q; want the DaemonSet's port metrics (ports %v), /metrics", ep.Port, ep.Path, ports)
	}
	if len(ep.Relabelings) != 1 || ep.Relabelings[0].TargetLabel != "node" ||
		!slices.Equal(ep.Relabelings[0].SourceLabels, []string{"__meta_kubernetes_pod_node_name"}) {
		t.Errorf("relabelings %+v, want the pod's node as label node", ep.Relabelings)
	}
}

// kustomization is the kustomization's fields that the file sets.
type kustomization struct {
	APIVersion         string   `json:"apiVersion"`
	Kind               string   `json:"kind"`
	Namespace          string   `json:"namespace"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"options"`
	} `json:"configMapGenerator"`
}

// The kustomization lists the objects of this folder and generates the
// dashboard's ConfigMap from dashboard.json, labelled for Grafana's
// sidecar.
func TestKustomization(t *testing.T) {
	var k kustomization
	if err := decodeStrict("kustomization.yaml", &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Resources, []string{"podmonitor.yaml", "prometheusrule.yaml"}) {
		t.Errorf("resources %v", k.Resources)
	}
	for _, r := range k.Resources {
		if _, err := Files.ReadFile(r); err != nil {
			t.Errorf("resource %s: %v", r, err)
		}
	}
	if len(k.ConfigMapGenerator) != 1 {
		t.Fatalf("%d ConfigMap generators, want 1 (the dashboard)", len(k.ConfigMapGenerator))
	}
	g := k.ConfigMapGenerator[0]
	if !slices.Equal(g.Files, []string{"mesh-accel.json=dashboard.json"}) || g.Options.Labels["grafana_dashboard"] != "1" {
		t.Errorf("generator %+v, want dashboard.json labelled grafana_dashboard: \"1\"", g)
	}
}

// The dashboard has the datasource and node variables, every panel reads
// the datasource variable, and every query of mesh-accel's metrics is
// filtered by the node variable.
func TestDashboard(t *testing.T) {
	b, err := Files.ReadFile("dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int    `json:"id"`
			Type       string `json:"type"`
			Title      string `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			GridPos struct{ X, W int } `json:"gridPos"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name+":"+v.Type)
	}
	if !slices.Equal(vars, []string{"datasource:datasource", "node:query"}) || d.UID == "" {
		t.Errorf("uid %q, variables %v; want a uid, datasource and node", d.UID, vars)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: id %d twice, or wider than the grid", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && (p.Datasource == nil || p.Datasource.UID != "${datasource}") {
			t.Errorf("panel %q: datasource %+v, want ${datasource}", p.Title, p.Datasource)
		}
	}
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	for where, e := range exprs {
		if strings.HasPrefix(where, "panel") && strings.Contains(e, "mesh_accel_") && !strings.Contains(e, `node=~"$node"`) {
			t.Errorf("%s: %q is not filtered by the node variable", where, e)
		}
	}
}

// Expressions finds the alerts, the panels' targets and the variables.
func TestExpressions(t *testing.T) {
	exprs, err := Expressions()
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for where, e := range exprs {
		kinds[strings.Fields(where)[0]]++
		if names, err := MetricNames(e); err != nil || len(names) == 0 {
			t.Errorf("%s: %q names no metric (%v)", where, e, err)
		}
	}
	if kinds["alert"] < 8 || kinds["panel"] < 15 || kinds["variable"] != 1 {
		t.Errorf("expressions by kind %v, want the alerts, the panels and the node variable", kinds)
	}
	if exprs["variable node"] != "mesh_accel_build_info" {
		t.Errorf("node variable reads %q", exprs["variable node"])
	}
}
