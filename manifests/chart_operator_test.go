package manifests_test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests/render"
)

// helmTemplate renders the chart as `helm template NAME -n NAMESPACE
// --kube-version 1.33.0` does, returning the manifest and the notes.
func helmTemplate(t *testing.T, name, namespace string, values map[string]any) (string, string) {
	t.Helper()
	c, err := render.LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	manifest, notes, err := render.Template(c, name, namespace, values, "1.33.0")
	if err != nil {
		t.Fatal(err)
	}
	return manifest, notes
}

// object is a rendered object, decoded without its type.
type object struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	raw []byte
}

// objectsOf decodes every object of a YAML stream by its kind and name.
func objectsOf(t *testing.T, stream string) map[string]object {
	t.Helper()
	out := map[string]object{}
	for _, doc := range bytes.Split([]byte(stream), []byte("\n---")) {
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		if o.Kind == "" {
			continue
		}
		o.raw = doc
		out[o.Kind+"/"+o.Metadata.Name] = o
	}
	return out
}

// oldSelector is the DaemonSet's selector of every earlier chart and of
// kustomize: a DaemonSet's selector is immutable, so changing it would
// make `helm upgrade` of existing installs fail.
var oldSelector = map[string]string{"app.kubernetes.io/name": "mesh-accel", "app.kubernetes.io/component": "node"}

// Every object the chart can render carries the release's
// app.kubernetes.io/instance and helm.sh/chart labels (and the version);
// the pods carry the instance, not helm.sh/chart (a chart version alone
// does not roll the nodes); the DaemonSet's selector stays the one of
// earlier releases.
func TestChartLabels(t *testing.T) {
	values := withMonitoring(nonDefault)
	values["namespace"] = map[string]any{"create": true}
	manifest, _ := helmTemplate(t, "accel", "mesh-accel", values)
	objs := objectsOf(t, manifest)
	if len(objs) < 12 {
		t.Fatalf("%d objects: want every optional one too (%v)", len(objs), slices.Sorted(maps.Keys(objs)))
	}
	for key, o := range objs {
		l := o.Metadata.Labels
		if l["app.kubernetes.io/instance"] != "accel" || l["helm.sh/chart"] != "mesh-accel-0.1.0" ||
			l[render.VersionLabel] != "v1.2.3" || l["app.kubernetes.io/name"] != "mesh-accel" || l[managedBy] != "Helm" {
			t.Errorf("%s: labels %v", key, l)
		}
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(objs["DaemonSet/mesh-accel-node"].raw, &ds); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(ds.Spec.Selector.MatchLabels, oldSelector) {
		t.Errorf("selector %v, want %v", ds.Spec.Selector.MatchLabels, oldSelector)
	}
	pl := ds.Spec.Template.Labels
	if pl["app.kubernetes.io/instance"] != "accel" || pl["helm.sh/chart"] != "" || pl["team"] != "mesh" {
		t.Errorf("pod labels %v", pl)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if pl[k] != v {
			t.Errorf("the selector's %s=%s is not on the pods", k, v)
		}
	}
}

// The chart needs Kubernetes 1.30 (appArmorProfile); providers' versions
// with a suffix pass.
func TestChartKubeVersion(t *testing.T) {
	c, err := render.LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.30.0", "v1.30.4-gke.1348000", "1.33.2+k3s1", "1.37.0"} {
		if _, _, err := render.Template(c, "mesh-accel", "mesh-accel", nil, v); err != nil {
			t.Errorf("Kubernetes %s: %v", v, err)
		}
	}
	for _, v := range []string{"1.29.9", "v1.29.15-eks-1"} {
		if _, _, err := render.Template(c, "mesh-accel", "mesh-accel", nil, v); err == nil || !strings.Contains(err.Error(), "kubeVersion") {
			t.Errorf("Kubernetes %s: %v, want the kubeVersion refused", v, err)
		}
	}
}

// The notes tell how to check a node with commands that work: the
// installer pod on that node by a field selector on spec.nodeName and the
// DaemonSet's own labels, then /mesh-accelctl run directly (the image has
// no shell), in the release's namespace.
func TestChartNotes(t *testing.T) {
	_, notes := helmTemplate(t, "mesh-accel", "accel-system", nil)
	sel := strings.Join([]string{"app.kubernetes.io/name=mesh-accel", "app.kubernetes.io/component=node"}, ",")
	for _, want := range []string{
		"kubectl -n accel-system rollout status daemonset/mesh-accel-node",
		"kubectl -n accel-system get pod -l " + sel + " --field-selector spec.nodeName=$NODE -o name",
		"kubectl -n accel-system exec $POD -- /mesh-accelctl status",
		"kubectl label namespace accel-system pod-security.kubernetes.io/enforce=privileged",
		"monitoring.podMonitor.enabled=true",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	for k, v := range oldSelector {
		if !strings.Contains(sel, k+"="+v) {
			t.Errorf("the notes' selector lacks %s=%s", k, v)
		}
	}
	for _, bad := range []string{"ds/", "daemonset/mesh-accel-node --", " sh ", "bash", "{{"} {
		if strings.Contains(notes, bad) {
			t.Errorf("notes hold %q:\n%s", bad, notes)
		}
	}
	_, notes = helmTemplate(t, "mesh-accel", "accel-system", setValues(t, "removeBPFOnExit=true", "namespace.create=true", "monitoring.dashboard.enabled=true"))
	if !strings.Contains(notes, "removeBPFOnExit is true") || strings.Contains(notes, "kubectl label namespace") || strings.Contains(notes, "monitoring.podMonitor.enabled=true") {
		t.Errorf("notes with removeBPFOnExit, namespace.create and monitoring:\n%s", notes)
	}
}

// The operator's settings reach the pods: update strategy, affinity, node
// selector, pod labels and annotations, image pull secrets, extra env.
func TestChartPodSettings(t *testing.T) {
	ds := renderChart(t, nonDefault).daemonSet(t)
	spec := ds.Spec.Template.Spec
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxUnavailable.String() != "10%" || u.RollingUpdate.MaxSurge.IntValue() != 0 {
		t.Errorf("update strategy %+v", u)
	}
	if a := spec.Affinity; a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		t.Errorf("affinity %+v", a)
	}
	if !maps.Equal(spec.NodeSelector, map[string]string{"kubernetes.io/os": "linux", "pool": "mesh"}) {
		t.Errorf("node selector %v", spec.NodeSelector)
	}
	if ds.Spec.Template.Labels["team"] != "mesh" || ds.Spec.Template.Annotations["example.com/owner"] != "mesh" {
		t.Errorf("pod labels %v, annotations %v", ds.Spec.Template.Labels, ds.Spec.Template.Annotations)
	}
	if !slices.Equal(spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "regcred"}}) {
		t.Errorf("image pull secrets %v", spec.ImagePullSecrets)
	}
	env := spec.Containers[0].Env
	if last := env[len(env)-1]; last != (corev1.EnvVar{Name: "GODEBUG", Value: "madvdontneed=1"}) {
		t.Errorf("last env %+v, want extraEnv's", last)
	}
	if ds := renderChart(t, setValues(t, "updateStrategy.type=OnDelete")).daemonSet(t); ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType || ds.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("OnDelete: %+v (Kubernetes refuses rollingUpdate with it)", ds.Spec.UpdateStrategy)
	}
	if spec := renderChart(t, nil).daemonSet(t).Spec.Template.Spec; spec.Affinity != nil || len(spec.ImagePullSecrets) != 0 {
		t.Errorf("defaults: affinity %+v, pull secrets %v", spec.Affinity, spec.ImagePullSecrets)
	}
}

// GOMEMLIMIT is the installer container's memory limit, through the
// downward API, when the container has one (kustomize's DaemonSet too);
// none without a limit; extraEnv's GOMEMLIMIT replaces it.
func TestChartGOMEMLIMIT(t *testing.T) {
	gomemlimit := func(c corev1.Container) []corev1.EnvVar {
		var out []corev1.EnvVar
		for _, e := range c.Env {
			if e.Name == "GOMEMLIMIT" {
				out = append(out, e)
			}
		}
		return out
	}
	fromLimit := func(e []corev1.EnvVar) bool {
		return len(e) == 1 && e[0].ValueFrom != nil && e[0].ValueFrom.ResourceFieldRef != nil &&
			e[0].ValueFrom.ResourceFieldRef.Resource == "limits.memory" &&
			(e[0].ValueFrom.ResourceFieldRef.ContainerName == "" || e[0].ValueFrom.ResourceFieldRef.ContainerName == "installer")
	}
	for name, c := range map[string]corev1.Container{
		"kustomize":  load(t).ds.Spec.Template.Spec.Containers[0],
		"chart":      renderChart(t, nil).daemonSet(t).Spec.Template.Spec.Containers[0],
		"nonDefault": renderChart(t, nonDefault).daemonSet(t).Spec.Template.Spec.Containers[0],
	} {
		if e := gomemlimit(c); !fromLimit(e) || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: GOMEMLIMIT %+v, memory limit %v", name, e, c.Resources.Limits.Memory())
		}
	}
	c := renderChart(t, setValues(t, "resources.installer.limits=null")).daemonSet(t).Spec.Template.Spec.Containers[0]
	if e := gomemlimit(c); len(e) != 0 || !c.Resources.Limits.Memory().IsZero() {
		t.Errorf("no limit: GOMEMLIMIT %+v, limits %v", e, c.Resources.Limits)
	}
	c = renderChart(t, setValues(t, "extraEnv[0].name=GOMEMLIMIT", "extraEnv[0].value=200MiB")).daemonSet(t).Spec.Template.Spec.Containers[0]
	if e := gomemlimit(c); len(e) != 1 || e[0].Value != "200MiB" {
		t.Errorf("extraEnv GOMEMLIMIT: %+v", e)
	}
}
