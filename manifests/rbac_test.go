package manifests_test

import (
	"io/fs"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/apiaccess"
)

// sccRole is the OpenShift grant to use the privileged SCC: an admission
// right, not an API request of the code (checkPlatformObjects checks it).
const sccRole = "ClusterRole/mesh-accel-scc"

// The service account's roles grant exactly the API requests the code
// makes (apiaccess.All, which the installer's and the plugin's tests derive
// from the requests their API code sends to a recording API server): no
// right is granted that no code uses, none that the code uses is missing.
// Every rendering is checked: kustomize with each component, the chart with
// its defaults and with every value changed.
func TestRBACMatchesAPICalls(t *testing.T) {
	renderings := map[string]rendered{
		"kustomize":         renderKustomize(t, zeroImage),
		"chart":             renderChart(t, nil),
		"chart non-default": renderChart(t, nonDefault),
	}
	dirs, err := fs.ReadDir(manifests.Components, "components")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		renderings["kustomize+"+d.Name()] = renderKustomize(t, zeroImage, d.Name())
	}
	want := apiaccess.All()
	for name, r := range renderings {
		got := granted(t, r)
		for _, a := range got {
			if !slices.Contains(want, a) {
				t.Errorf("%s: the roles grant %v, which no code uses", name, a)
			}
		}
		for _, a := range want {
			if !slices.Contains(got, a) {
				t.Errorf("%s: the code needs %v, which no role grants", name, a)
			}
		}
	}
}

// granted expands the rules of the roles bound to the DaemonSet's service
// account into one access per group, resource and verb.
func granted(t *testing.T, r rendered) []apiaccess.Access {
	t.Helper()
	sa := r.daemonSet(t).Spec.Template.Spec.ServiceAccountName
	var out []apiaccess.Access
	for _, obj := range r {
		var ref rbacv1.RoleRef
		var subjects []rbacv1.Subject
		switch b := obj.(type) {
		case *rbacv1.ClusterRoleBinding:
			ref, subjects = b.RoleRef, b.Subjects
		case *rbacv1.RoleBinding:
			ref, subjects = b.RoleRef, b.Subjects
		default:
			continue
		}
		if !slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == sa }) {
			continue
		}
		key := ref.Kind + "/" + ref.Name
		if key == sccRole {
			continue
		}
		role, ok := r[key].(*rbacv1.ClusterRole)
		if !ok {
			t.Errorf("a binding names %s, which is not rendered", key)
			continue
		}
		for _, rule := range role.Rules {
			if len(rule.NonResourceURLs) > 0 || len(rule.ResourceNames) > 0 {
				t.Errorf("%s: rule %+v: the code needs no URL or name rules", key, rule)
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						out = append(out, apiaccess.Access{Group: g, Resource: res, Verb: v})
					}
				}
			}
		}
	}
	return apiaccess.Sorted(out)
}
