package manifests_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/manifests/render"
	"github.com/mesh-accel/mesh-accel/rules"
)

// nonDefault sets every value the chart has away from its default.
var nonDefault = map[string]any{
	"image":             map[string]any{"repository": "registry.example/mesh-accel", "tag": "v1.2.3", "digest": "sha256:" + strings.Repeat("ab", 32), "pullPolicy": "Always"},
	"cni":               map[string]any{"binDir": "/home/kubernetes/bin", "confDir": "/etc/kubernetes/cni/net.d", "confName": "00-multus.conf"},
	"enabled":           false,
	"sidecarUID":        1000690000,
	"excludeNamespaces": []any{"kube-system", "openshift-dns"},
	"failOnError":       true,
	"podQuota":          2048,
	"backlogLimit":      1 << 20,
	"mapSize":           262144,
	"metrics":           map[string]any{"address": "127.0.0.1", "port": 19753, "scrapeAnnotations": false},
	"removeBPFOnExit":   true,
	"pluginKubeconfig":  false,
	"logLevel":          "debug",
	"seccompProfile":    "Unconfined",
	"priorityClassName": "mesh-critical",
	"tolerations":       []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"}},
	"resources":         map[string]any{"installer": map[string]any{"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"memory": "512Mi"}}},
	"platform":          map[string]any{"gke": map[string]any{"criticalPodsQuota": true}, "openshift": map[string]any{"privilegedSCC": true}},
	"imagePullSecrets":  []any{map[string]any{"name": "regcred"}},
	"updateStrategy":    map[string]any{"type": "RollingUpdate", "rollingUpdate": map[string]any{"maxUnavailable": "10%"}},
	"nodeSelector":      map[string]any{"pool": "mesh"},
	"affinity": map[string]any{"nodeAffinity": map[string]any{"requiredDuringSchedulingIgnoredDuringExecution": map[string]any{
		"nodeSelectorTerms": []any{map[string]any{"matchExpressions": []any{map[string]any{"key": "mesh-accel", "operator": "NotIn", "values": []any{"off"}}}}},
	}}},
	"podLabels":      map[string]any{"team": "mesh"},
	"podAnnotations": map[string]any{"example.com/owner": "mesh"},
	"extraEnv":       []any{map[string]any{"name": "GODEBUG", "value": "madvdontneed=1"}},
	// The monitoring objects: withMonitoring (their kinds are not decoded
	// into k8s.io/api types).
}

// helm lint, strict (warnings fail), passes with the defaults and with
// every value changed.
func TestChartLint(t *testing.T) {
	for name, values := range map[string]map[string]any{"defaults": nil, "non-default": nonDefault, "monitoring": withMonitoring(nonDefault)} {
		l := lint.All(render.ChartDir, values, "mesh-accel", true)
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s: %s", name, m)
			}
		}
	}
}

func renderChart(t *testing.T, values map[string]any) rendered {
	t.Helper()
	out, err := render.Chart("mesh-accel", "mesh-accel", values)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "chart", out)
}

func renderKustomize(t *testing.T, img render.Image, components ...string) rendered {
	t.Helper()
	out, err := render.Kustomize(img, components...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, "kustomize", out)
}

// With its defaults (and the Namespace it leaves to `helm install
// --create-namespace` by default) the chart renders the objects of `kubectl
// apply -k manifests/`, field by field; only managed-by differs.
func TestChartMatchesKustomize(t *testing.T) {
	want := renderKustomize(t, render.Image{}).withoutManagedBy()
	got := renderChart(t, map[string]any{"namespace": map[string]any{"create": true}}).withoutManagedBy()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("chart differs from kustomize (-kustomize +chart):\n%s", diff)
	}
	if _, ok := renderChart(t, nil)["Namespace/mesh-accel"]; ok {
		t.Error("the chart renders the Namespace by default: helm install --create-namespace would collide with it")
	}
	if ds := renderChart(t, nil).daemonSet(t); ds.Labels[managedBy] != "Helm" {
		t.Errorf("managed-by %q", ds.Labels[managedBy])
	}
}

// Every value reaches the objects, the installer's configuration (built by
// installer.NewConfig from the rendered command and env) and, through
// installer.NewEntry, the plugin's conflist entry.
func TestChartValues(t *testing.T) {
	r := renderChart(t, nonDefault)
	ds := r.daemonSet(t)
	spec := ds.Spec.Template.Spec
	c := spec.Containers[0]
	cfg := installerConfig(t, c)
	e := installer.NewEntry(cfg)
	if e.SidecarUID != 1000690000 || !e.FailOnError || !slices.Equal(e.ExcludeNamespaces, []string{"kube-system", "openshift-dns"}) || e.PodQuota != 2048 ||
		e.MapSize != 262144 {
		t.Errorf("conflist entry %+v", e)
	}
	if !cfg.RemoveBPFOnExit || cfg.LogLevel.String() != "DEBUG" || cfg.BacklogLimit != 1<<20 || cfg.MapSize != 262144 || cfg.Listen != "127.0.0.1:19753" ||
		cfg.CNIConfName != "00-multus.conf" || !cfg.NoPluginKubeconfig {
		t.Errorf("installer config %+v", cfg)
	}
	if got := hostPathOf(ds, cfg.HostCNIBinDir); got != "/home/kubernetes/bin" {
		t.Errorf("--%s is %s on the host", installer.FlagHostCNIBinDir, got)
	}
	if got := hostPathOf(ds, cfg.HostCNIConfDir); got != "/etc/kubernetes/cni/net.d" {
		t.Errorf("--%s is %s on the host", installer.FlagHostCNIConfDir, got)
	}
	wantImage := "registry.example/mesh-accel:v1.2.3@sha256:" + strings.Repeat("ab", 32)
	for _, c := range allContainers(ds) {
		if c.Image != wantImage || c.ImagePullPolicy != corev1.PullAlways {
			t.Errorf("container %s: image %s, pull %s", c.Name, c.Image, c.ImagePullPolicy)
		}
	}
	if p := c.ReadinessProbe.HTTPGet.Port.IntValue(); p != 19753 || c.LivenessProbe.HTTPGet.Port.IntValue() != 19753 || c.Ports[0].ContainerPort != 19753 {
		t.Errorf("probes and port do not follow metrics.port: %d", p)
	}
	if _, ok := ds.Spec.Template.Annotations["prometheus.io/scrape"]; ok {
		t.Error("scrape annotations left with metrics.scrapeAnnotations false")
	}
	if spec.PriorityClassName != "mesh-critical" || len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != "dedicated" {
		t.Errorf("priority %q, tolerations %+v", spec.PriorityClassName, spec.Tolerations)
	}
	if sp := spec.SecurityContext.SeccompProfile; sp == nil || sp.Type != corev1.SeccompProfileTypeUnconfined {
		t.Errorf("seccomp profile %+v", sp)
	}
	if got := c.Resources.Requests[corev1.ResourceCPU]; got.String() != "50m" {
		t.Errorf("installer cpu request %s", got.String())
	}
	if ds.Labels[render.VersionLabel] != "v1.2.3" || ds.Spec.Template.Labels[render.VersionLabel] != "v1.2.3" {
		t.Errorf("version labels %v", ds.Labels)
	}
	cm := r["ConfigMap/mesh-accel-rules"].(*corev1.ConfigMap)
	if got, want := cm.Data["rules"], rules.DefaultText(1000690000); got != want {
		t.Errorf("rules %q: want the defaults for the sidecar uid, %q", got, want)
	}
	if cm.Data["enabled"] != "false" {
		t.Errorf("ConfigMap enabled = %q, want the value false", cm.Data["enabled"])
	}
	checkPlatformObjects(t, r)
}

// checkPlatformObjects checks the GKE quota and the OpenShift SCC grant.
func checkPlatformObjects(t *testing.T, r rendered) {
	t.Helper()
	q, ok := r["ResourceQuota/mesh-accel-critical-pods"].(*corev1.ResourceQuota)
	if !ok || q.Spec.ScopeSelector == nil || len(q.Spec.ScopeSelector.MatchExpressions) != 1 ||
		!slices.Equal(q.Spec.ScopeSelector.MatchExpressions[0].Values, []string{r.daemonSet(t).Spec.Template.Spec.PriorityClassName}) &&
			!slices.Equal(q.Spec.ScopeSelector.MatchExpressions[0].Values, []string{"system-node-critical"}) {
		t.Errorf("critical pods quota %+v", q)
	}
	role, ok := r["ClusterRole/mesh-accel-scc"].(*rbacv1.ClusterRole)
	if !ok || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Verbs, []string{"use"}) || !slices.Equal(role.Rules[0].ResourceNames, []string{"privileged"}) {
		t.Errorf("SCC role %+v", role)
	}
	b, ok := r["RoleBinding/mesh-accel-scc"].(*rbacv1.RoleBinding)
	if !ok || b.RoleRef.Name != "mesh-accel-scc" || len(b.Subjects) != 1 || b.Subjects[0].Name != "mesh-accel" {
		t.Errorf("SCC binding %+v", b)
	}
}

// Rules given as a value replace the defaults; no namespace excluded is
// "-" for the installer, [] in the entry.
func TestChartRulesAndNoExclusion(t *testing.T) {
	text := "chain --uid-owner 1337 -j ACCEPT\nchain --port 15006 -j RETURN\nchain --port 3306 -j RETURN\n"
	r := renderChart(t, map[string]any{"rules": text, "excludeNamespaces": []any{}})
	if got := r["ConfigMap/mesh-accel-rules"].(*corev1.ConfigMap).Data["rules"]; got != text {
		t.Errorf("rules %q, want %q", got, text)
	}
	e := installer.NewEntry(installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0]))
	if e.ExcludeNamespaces == nil || len(e.ExcludeNamespaces) != 0 {
		t.Errorf("excludeNamespaces %v, want []", e.ExcludeNamespaces)
	}
}
