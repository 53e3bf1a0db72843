package manifests_test

import (
	"bytes"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	yamlv3 "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/monitoring"
	"github.com/mesh-accel/mesh-accel/manifests/render"
)

const regenerate = "run `go generate ./manifests/render`"

// The chart's README.md holds the values table that values.yaml's comments
// and the schema give.
func TestChartREADMEValuesTable(t *testing.T) {
	readme := chartFile(t, "README.md")
	want, err := render.ChartREADME(readme, chartFile(t, "values.yaml"), chartFile(t, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readme, want) {
		t.Errorf("the chart's README.md is stale (%s):\n%s", regenerate, cmp.Diff(string(readme), string(want)))
	}
}

// The chart's copies of the monitoring files are byte for byte those of
// manifests/monitoring, and the chart carries no other.
func TestChartMonitoringCopies(t *testing.T) {
	dir := render.ChartDir + "/" + render.ChartMonitoringDir
	entries, err := fs.ReadDir(manifests.Chart, dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := slices.Sorted(slices.Values(render.MonitoringCopies)); !slices.Equal(names, want) {
		t.Errorf("%s holds %v, want %v", dir, names, want)
	}
	for _, name := range render.MonitoringCopies {
		want, err := monitoring.Files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := manifests.Chart.ReadFile(dir + "/" + name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("chart's %s differs from manifests/monitoring/%s (%v): %s", name, name, err, regenerate)
		}
	}
}

// comparable is a monitoring object without the labels only the chart
// sets, each string's runs of white space made one space: kustomize reads
// a folded block scalar's more indented line with one line break too many
// (the alerts' expressions), which PromQL ignores.
func comparable(t *testing.T, o object, keep map[string]string) any {
	t.Helper()
	var m map[string]any
	if err := yamlv3.Unmarshal(o.raw, &m); err != nil {
		t.Fatal(err)
	}
	md := m["metadata"].(map[string]any)
	labels, _ := md["labels"].(map[string]any)
	for k := range labels {
		if _, ok := keep[k]; !ok {
			delete(labels, k)
		}
	}
	return squeezeSpace(m)
}

func squeezeSpace(v any) any {
	switch v := v.(type) {
	case string:
		return strings.Join(strings.Fields(v), " ")
	case map[string]any:
		for k, e := range v {
			v[k] = squeezeSpace(e)
		}
	case []any:
		for i, e := range v {
			v[i] = squeezeSpace(e)
		}
	}
	return v
}

// The chart's monitoring objects, all on, are those of `kubectl apply -k
// manifests/monitoring/` (the same kinds, names, specs, alerts, dashboard
// and labels), plus the chart's labels; they are off by default.
func TestChartMonitoringMatchesKustomize(t *testing.T) {
	k, err := render.Monitoring(render.Image{})
	if err != nil {
		t.Fatal(err)
	}
	want := objectsOf(t, string(k))
	if len(want) != 3 {
		t.Fatalf("manifests/monitoring renders %v", slices.Sorted(maps.Keys(want)))
	}
	values := setValues(t, "monitoring.podMonitor.enabled=true", "monitoring.prometheusRule.enabled=true", "monitoring.dashboard.enabled=true")
	manifest, _ := helmTemplate(t, "mesh-accel", "mesh-accel", values)
	got := objectsOf(t, manifest)
	for key, w := range want {
		g, ok := got[key]
		if !ok {
			t.Errorf("the chart has no %s (a new monitoring object needs a template)", key)
			continue
		}
		for lk, lv := range w.Metadata.Labels {
			if g.Metadata.Labels[lk] != lv {
				t.Errorf("%s: label %s=%q, want %q", key, lk, g.Metadata.Labels[lk], lv)
			}
		}
		if g.Metadata.Labels["app.kubernetes.io/instance"] != "mesh-accel" {
			t.Errorf("%s: labels %v", key, g.Metadata.Labels)
		}
		if diff := cmp.Diff(comparable(t, w, w.Metadata.Labels), comparable(t, g, w.Metadata.Labels)); diff != "" {
			t.Errorf("%s differs (-kustomize +chart):\n%s", key, diff)
		}
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(got["ConfigMap/mesh-accel-dashboard"].raw, &cm); err != nil {
		t.Fatal(err)
	}
	dashboard, err := monitoring.Files.ReadFile("dashboard.json")
	if err != nil || cm.Data["mesh-accel.json"] != string(dashboard) {
		t.Errorf("the dashboard's ConfigMap does not hold dashboard.json byte for byte (%v)", err)
	}
	manifest, _ = helmTemplate(t, "mesh-accel", "mesh-accel", nil)
	for key := range want {
		if _, ok := objectsOf(t, manifest)[key]; ok {
			t.Errorf("%s rendered by default", key)
		}
	}
}

var jobSelector = regexp.MustCompile(`job="([^"]*)"`)

// In another namespace the monitoring objects follow the release: the
// alerts name the PodMonitor's job there (namespace/name), extra labels
// are added without replacing the chart's, and the dashboard goes to the
// namespace asked for.
func TestChartMonitoringNamespace(t *testing.T) {
	manifest, _ := helmTemplate(t, "obs", "observed", withMonitoring(nil))
	objs := objectsOf(t, manifest)
	pm, pr, cm := objs["PodMonitor/mesh-accel-node"], objs["PrometheusRule/mesh-accel"], objs["ConfigMap/mesh-accel-dashboard"]
	if pm.Metadata.Namespace != "observed" || pr.Metadata.Namespace != "observed" || cm.Metadata.Namespace != "grafana" {
		t.Errorf("namespaces: PodMonitor %q, PrometheusRule %q, dashboard %q", pm.Metadata.Namespace, pr.Metadata.Namespace, cm.Metadata.Namespace)
	}
	jobs := jobSelector.FindAllStringSubmatch(string(pr.raw), -1)
	if len(jobs) == 0 {
		t.Error("no alert selects the PodMonitor's job")
	}
	for _, j := range jobs {
		if j[1] != "observed/"+pm.Metadata.Name {
			t.Errorf("an alert selects %s, want the PodMonitor's job observed/%s", j[0], pm.Metadata.Name)
		}
	}
	if pm.Metadata.Labels["release"] != "kps" || pr.Metadata.Labels["release"] != "kps" || cm.Metadata.Labels["team"] != "mesh" ||
		cm.Metadata.Labels["grafana_dashboard"] != "1" || !strings.Contains(string(cm.raw), "grafana_folder: mesh") {
		t.Errorf("labels: PodMonitor %v, PrometheusRule %v, dashboard %v", pm.Metadata.Labels, pr.Metadata.Labels, cm.Metadata.Labels)
	}
	manifest, _ = helmTemplate(t, "obs", "observed", setValues(t, "monitoring.podMonitor.enabled=true",
		`monitoring.podMonitor.labels.app\.kubernetes\.io/component=other`))
	if l := objectsOf(t, manifest)["PodMonitor/mesh-accel-node"].Metadata.Labels; l["app.kubernetes.io/component"] != "monitoring" {
		t.Errorf("extra labels replaced the chart's: %v", l)
	}
}
