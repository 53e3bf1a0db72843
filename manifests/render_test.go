package manifests_test

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// rendered are the objects of a rendering, decoded strictly into their
// k8s.io/api types, by "Kind/name".
type rendered map[string]any

// managedBy is the one label the chart and kustomize set differently.
const managedBy = "app.kubernetes.io/managed-by"

// decodeAll splits a multi-document YAML stream and decodes each object
// strictly (an unknown or misspelt field fails) into its type.
func decodeAll(t *testing.T, what string, stream []byte) rendered {
	t.Helper()
	out := rendered{}
	for i, doc := range bytes.Split(stream, []byte("\n---")) {
		// The end stays: a block scalar's last line break is content.
		doc = append(bytes.TrimPrefix(bytes.TrimLeft(doc, "\n"), []byte("---")), '\n')
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("%s document %d: %v", what, i, err)
		}
		if tm.Kind == "" {
			continue // comments only
		}
		obj := newObject(tm.Kind)
		if obj == nil {
			t.Fatalf("%s document %d: unexpected kind %s", what, i, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", what, i, tm.Kind, err)
		}
		key := tm.Kind + "/" + meta(obj).Name
		if _, dup := out[key]; dup {
			t.Fatalf("%s: %s twice", what, key)
		}
		out[key] = obj
	}
	return out
}

func newObject(kind string) any {
	switch kind {
	case "Namespace":
		return &corev1.Namespace{}
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "ResourceQuota":
		return &corev1.ResourceQuota{}
	case "ClusterRole":
		return &rbacv1.ClusterRole{}
	case "ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "RoleBinding":
		return &rbacv1.RoleBinding{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	}
	return nil
}

// meta returns the object's metadata.
func meta(obj any) *metav1.ObjectMeta {
	return obj.(interface{ GetObjectMeta() metav1.Object }).GetObjectMeta().(*metav1.ObjectMeta)
}

// daemonSet returns the rendering's DaemonSet.
func (r rendered) daemonSet(t *testing.T) *appsv1.DaemonSet {
	t.Helper()
	ds, ok := r["DaemonSet/mesh-accel-node"].(*appsv1.DaemonSet)
	if !ok {
		t.Fatalf("no DaemonSet mesh-accel-node in %v", r.keys())
	}
	return ds
}

func (r rendered) keys() []string {
	var k []string
	for key := range r {
		k = append(k, key)
	}
	return k
}

// helmOnlyLabels are the labels the chart sets and kustomize does not (the
// Helm release and chart): TestChartLabels checks them.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "helm.sh/chart"}

// withoutManagedBy sets the managed-by label of every object (and pod
// template) to one value and drops helmOnlyLabels, so that the chart's
// ("Helm") and kustomize's renderings compare.
func (r rendered) withoutManagedBy() rendered {
	for _, obj := range r {
		metas := []*metav1.ObjectMeta{meta(obj)}
		if ds, ok := obj.(*appsv1.DaemonSet); ok {
			metas = append(metas, &ds.Spec.Template.ObjectMeta)
		}
		for _, m := range metas {
			if _, ok := m.Labels[managedBy]; ok {
				m.Labels[managedBy] = "-"
			}
			for _, k := range helmOnlyLabels {
				delete(m.Labels, k)
			}
		}
	}
	return r
}

// hostPathOf returns the host path behind a container path of the
// installer container (through its volume mounts), "" when none.
func hostPathOf(ds *appsv1.DaemonSet, p string) string {
	m, rel := mountOf(ds.Spec.Template.Spec.Containers[0], p)
	if m == nil {
		return ""
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == m.Name && v.HostPath != nil {
			return strings.TrimSuffix(v.HostPath.Path+"/"+rel, "/")
		}
	}
	return ""
}
