package manifests_test

import (
	"io/fs"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mesh-accel/mesh-accel/manifests"
	"github.com/mesh-accel/mesh-accel/manifests/render"
)

var zeroImage render.Image

// platforms are the components and the chart values that do the same.
var platforms = []struct {
	component    string
	binDir       string
	confDir      string
	values       map[string]any
	extraObjects []string
}{
	{"gke", "/home/kubernetes/bin", "/etc/cni/net.d",
		map[string]any{"cni": map[string]any{"binDir": "/home/kubernetes/bin"}, "platform": map[string]any{"gke": map[string]any{"criticalPodsQuota": true}}},
		[]string{"ResourceQuota/mesh-accel-critical-pods"}},
	{"k3s", "/var/lib/rancher/k3s/data/cni", "/var/lib/rancher/k3s/agent/etc/cni/net.d",
		map[string]any{"cni": map[string]any{"binDir": "/var/lib/rancher/k3s/data/cni", "confDir": "/var/lib/rancher/k3s/agent/etc/cni/net.d"}},
		nil},
	{"microk8s", "/var/snap/microk8s/current/opt/cni/bin", "/var/snap/microk8s/current/args/cni-network",
		map[string]any{"cni": map[string]any{"binDir": "/var/snap/microk8s/current/opt/cni/bin", "confDir": "/var/snap/microk8s/current/args/cni-network"}},
		nil},
	{"openshift", "/var/lib/cni/bin", "/etc/kubernetes/cni/net.d",
		map[string]any{"cni": map[string]any{"binDir": "/var/lib/cni/bin", "confDir": "/etc/kubernetes/cni/net.d"}, "platform": map[string]any{"openshift": map[string]any{"privilegedSCC": true}}},
		[]string{"ClusterRole/mesh-accel-scc", "RoleBinding/mesh-accel-scc"}},
}

// Each platform's component moves the installer's CNI folders (its
// --host-cni-bin-dir and --host-cni-conf-dir, through the volume mounts) to
// the platform's host paths and adds the platform's objects; the chart with
// the values the chart's README gives for the platform renders the same
// objects.
func TestComponents(t *testing.T) {
	dirs, err := fs.ReadDir(manifests.Components, "components")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range dirs {
		names = append(names, d.Name())
	}
	for _, p := range platforms {
		if !slices.Contains(names, p.component) {
			t.Errorf("no component %s in %v", p.component, names)
		}
	}
	base := renderKustomize(t, zeroImage)
	for _, p := range platforms {
		t.Run(p.component, func(t *testing.T) {
			r := renderKustomize(t, zeroImage, p.component)
			ds := r.daemonSet(t)
			cfg := installerConfig(t, ds.Spec.Template.Spec.Containers[0])
			if got := hostPathOf(ds, cfg.HostCNIBinDir); got != p.binDir {
				t.Errorf("--host-cni-bin-dir %s is %s on the host, want %s", cfg.HostCNIBinDir, got, p.binDir)
			}
			if got := hostPathOf(ds, cfg.HostCNIConfDir); got != p.confDir {
				t.Errorf("--host-cni-conf-dir %s is %s on the host, want %s", cfg.HostCNIConfDir, got, p.confDir)
			}
			for _, k := range p.extraObjects {
				if _, ok := r[k]; !ok {
					t.Errorf("no %s in %v", k, r.keys())
				}
			}
			if len(r) != len(base)+len(p.extraObjects) {
				t.Errorf("objects %v, want the base's and %v", r.keys(), p.extraObjects)
			}
			values := map[string]any{"namespace": map[string]any{"create": true}}
			for k, v := range p.values {
				values[k] = v
			}
			chart := renderChart(t, values).withoutManagedBy()
			if diff := cmp.Diff(r.withoutManagedBy(), chart); diff != "" {
				t.Errorf("chart with %v differs from the component (-kustomize +chart):\n%s", p.values, diff)
			}
		})
	}
}
