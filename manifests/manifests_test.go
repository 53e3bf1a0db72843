package manifests_test

import (
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/rules"
)

// kustomization is the part of kustomize's Kustomization the manifests use;
// decoding it strictly rejects any other field.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// objects are the decoded manifests.
type objects struct {
	kust    kustomization
	ns      *corev1.Namespace
	sa      *corev1.ServiceAccount
	role    *rbacv1.ClusterRole
	binding *rbacv1.ClusterRoleBinding
	rules   *corev1.ConfigMap
	ds      *appsv1.DaemonSet
}

// load decodes every file the kustomization lists, strictly (an unknown or
// misspelt field fails), into its k8s.io/api type, and checks that every
// YAML file is listed.
func load(t *testing.T) *objects {
	t.Helper()
	o := &objects{}
	strict(t, "kustomization.yaml", &o.kust)
	if o.kust.APIVersion != "kustomize.config.k8s.io/v1beta1" || o.kust.Kind != "Kustomization" {
		t.Fatalf("kustomization: %s %s", o.kust.APIVersion, o.kust.Kind)
	}
	files, _ := fs.Glob(manifests.Files, "*.yaml")
	listed := append([]string{"kustomization.yaml"}, o.kust.Resources...)
	sort.Strings(listed)
	if strings.Join(files, " ") != strings.Join(listed, " ") {
		t.Errorf("YAML files %v, listed %v", files, listed)
	}
	for _, f := range o.kust.Resources {
		var tm metav1.TypeMeta
		strictPart(t, f, &tm)
		want, obj := o.slot(tm.Kind)
		if obj == nil {
			t.Fatalf("%s: unexpected kind %q", f, tm.Kind)
		}
		if tm.APIVersion != want {
			t.Errorf("%s: apiVersion %q, want %q", f, tm.APIVersion, want)
		}
		strict(t, f, obj)
	}
	if o.ns == nil || o.sa == nil || o.role == nil || o.binding == nil || o.rules == nil || o.ds == nil {
		t.Fatalf("missing objects: %+v", o)
	}
	return o
}

// slot returns the apiVersion of kind and where to decode it.
func (o *objects) slot(kind string) (string, any) {
	switch kind {
	case "Namespace":
		o.ns = &corev1.Namespace{}
		return "v1", o.ns
	case "ServiceAccount":
		o.sa = &corev1.ServiceAccount{}
		return "v1", o.sa
	case "ConfigMap":
		o.rules = &corev1.ConfigMap{}
		return "v1", o.rules
	case "ClusterRole":
		o.role = &rbacv1.ClusterRole{}
		return "rbac.authorization.k8s.io/v1", o.role
	case "ClusterRoleBinding":
		o.binding = &rbacv1.ClusterRoleBinding{}
		return "rbac.authorization.k8s.io/v1", o.binding
	case "DaemonSet":
		o.ds = &appsv1.DaemonSet{}
		return "apps/v1", o.ds
	}
	return "", nil
}

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := manifests.Files.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// strict decodes a whole file, rejecting unknown fields.
func strict(t *testing.T, name string, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(read(t, name), into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// strictPart decodes the fields of into, ignoring the others.
func strictPart(t *testing.T, name string, into any) {
	t.Helper()
	if err := yaml.Unmarshal(read(t, name), into); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// The objects hang together: one namespace, the binding grants the role to
// the DaemonSet's account, and the ConfigMap holds the default rules.
func TestObjects(t *testing.T) {
	o := load(t)
	ns := o.ns.Name
	for what, got := range map[string]string{"ServiceAccount": o.sa.Namespace, "ConfigMap": o.rules.Namespace, "DaemonSet": o.ds.Namespace} {
		if got != ns {
			t.Errorf("%s in namespace %q, want %q", what, got, ns)
		}
	}
	if o.ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Error("namespace does not admit the privileged init container")
	}
	// The role's rules: TestRBACMatchesAPICalls.
	b := o.binding
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: o.role.Name}) ||
		len(b.Subjects) != 1 || b.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: o.sa.Name, Namespace: ns}) {
		t.Errorf("binding %+v", b)
	}
	if o.ds.Spec.Template.Spec.ServiceAccountName != o.sa.Name {
		t.Errorf("DaemonSet runs as %q", o.ds.Spec.Template.Spec.ServiceAccountName)
	}
	text, ok := o.rules.Data[path.Base(installer.DefaultRulesFile)]
	if !ok || len(o.rules.Data) != 2 || o.rules.Data[installer.KillSwitchKey] != "true" {
		t.Fatalf("ConfigMap data %v: want the keys %q and %s: \"true\" only", o.rules.Data,
			path.Base(installer.DefaultRulesFile), installer.KillSwitchKey)
	}
	if want := rules.DefaultText(nodestate.DefaultSidecarUID); text != want {
		t.Errorf("ConfigMap rules %q: want the defaults, %q", text, want)
	}
	for _, img := range o.kust.Images {
		for _, c := range allContainers(o.ds) {
			if c.Image != img.Name {
				t.Errorf("container %s image %q is not the kustomization's %q", c.Name, c.Image, img.Name)
			}
		}
	}
}

// Every object carries the recommended labels, the pod template too; the
// selector holds only the stable ones (a version in it would make every
// upgrade a new DaemonSet).
func TestLabels(t *testing.T) {
	o := load(t)
	want := []string{"app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/version",
		"app.kubernetes.io/part-of", "app.kubernetes.io/managed-by"}
	for _, m := range []metav1.ObjectMeta{o.ns.ObjectMeta, o.sa.ObjectMeta, o.role.ObjectMeta, o.binding.ObjectMeta,
		o.rules.ObjectMeta, o.ds.ObjectMeta, o.ds.Spec.Template.ObjectMeta} {
		for _, k := range want {
			if m.Labels[k] == "" {
				t.Errorf("%s: no label %s", m.Name, k)
			}
		}
		if m.Labels["app.kubernetes.io/name"] != "mesh-accel" || m.Labels["app.kubernetes.io/part-of"] != "mesh-accel" {
			t.Errorf("%s: labels %v", m.Name, m.Labels)
		}
	}
	sel := o.ds.Spec.Selector.MatchLabels
	if len(sel) != 2 || sel["app.kubernetes.io/name"] != "mesh-accel" || sel["app.kubernetes.io/component"] == "" {
		t.Errorf("selector %v: want name and component only", sel)
	}
}

func allContainers(ds *appsv1.DaemonSet) []corev1.Container {
	return append(append([]corev1.Container(nil), ds.Spec.Template.Spec.InitContainers...), ds.Spec.Template.Spec.Containers...)
}

// testNodeIP is the node address the tests' downward API gives the pods.
const testNodeIP = "10.1.2.3"

// installerConfig builds the installer's configuration from a container's
// command, args and env, as the binary would on a node whose address is
// testNodeIP.
func installerConfig(t *testing.T, c corev1.Container) *installer.Config {
	t.Helper()
	return installerConfigOn(t, c, testNodeIP)
}

// installerConfigOn builds the installer's configuration on a node whose
// address is nodeIP: the env as the kubelet gives it (the downward API's
// status.hostIP and status.podIP, which are the node's for a pod on the
// host network; $(NAME) of an earlier variable expanded, $$ for $).
func installerConfigOn(t *testing.T, c corev1.Container, nodeIP string) *installer.Config {
	t.Helper()
	argv := append(append([]string(nil), c.Command...), c.Args...)
	if len(argv) == 0 || argv[0] != "/mesh-accel-installer" {
		t.Fatalf("container %s runs %q", c.Name, argv)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = expandEnv(e.Value, env)
		case e.ValueFrom.FieldRef != nil && (e.ValueFrom.FieldRef.FieldPath == "status.hostIP" || e.ValueFrom.FieldRef.FieldPath == "status.podIP"):
			env[e.Name] = nodeIP
		case e.Name == "GOMEMLIMIT" && e.ValueFrom.ResourceFieldRef != nil:
			// The Go runtime's soft limit (the memory limit's bytes), not
			// an installer setting.
		default:
			t.Fatalf("container %s: env %s from %+v", c.Name, e.Name, e.ValueFrom)
		}
	}
	cfg, err := installer.NewConfig(argv[1:], func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("container %s: %v", c.Name, err)
	}
	return cfg
}

// expandEnv expands $(NAME) of the variables defined so far, as the kubelet
// does; $$ is a $, an unknown $(NAME) stays.
func expandEnv(s string, env map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i++
		case strings.HasPrefix(s[i:], "$("):
			if end := strings.IndexByte(s[i:], ')'); end > 0 {
				if v, ok := env[s[i+2:i+end]]; ok {
					b.WriteString(v)
					i += end
					continue
				}
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}
