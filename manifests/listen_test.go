package manifests_test

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/mesh-accel/mesh-accel/installer"
)

// By default /metrics, /readyz and /livez listen on the node's own address
// (status.hostIP through the downward API, IPv4 or IPv6), not on every
// address of the host, and the probes reach them: the kubelet probes the
// pod's IP, which on the host network is the node's. An address given to
// the chart moves the probes with it (127.0.0.1: the kubelet probes the
// loopback, which a pod on the host network shares with it).
func TestMetricsListen(t *testing.T) {
	defaults := map[string]*corev1.Container{
		"kustomize": &renderKustomize(t, zeroImage).daemonSet(t).Spec.Template.Spec.Containers[0],
		"chart":     &renderChart(t, nil).daemonSet(t).Spec.Template.Spec.Containers[0],
	}
	if !renderChart(t, nil).daemonSet(t).Spec.Template.Spec.HostNetwork || !load(t).ds.Spec.Template.Spec.HostNetwork {
		t.Fatal("the probes' host (the pod IP) is the node's only on the host network")
	}
	for name, c := range defaults {
		for _, node := range []string{"10.1.2.3", "fd00::1"} {
			cfg := installerConfigOn(t, *c, node)
			host, port, err := net.SplitHostPort(cfg.Listen)
			if err != nil || host != node || port != "9753" {
				t.Errorf("%s on node %s: --listen %q, want the node's address and port 9753", name, node, cfg.Listen)
			}
		}
		checkProbes(t, name, c, "")
	}
	for _, tc := range []struct {
		address, listen, probeHost string
	}{
		{"127.0.0.1", "127.0.0.1:9753", "127.0.0.1"},
		{"[::1]", "[::1]:9753", "::1"},
		{"10.0.0.7", "10.0.0.7:9753", "10.0.0.7"},
		{"0.0.0.0", "0.0.0.0:9753", ""},
		{"[::]", "[::]:9753", ""},
	} {
		ds := renderChart(t, map[string]any{"metrics": map[string]any{"address": tc.address}}).daemonSet(t)
		c := &ds.Spec.Template.Spec.Containers[0]
		if cfg := installerConfig(t, *c); cfg.Listen != tc.listen {
			t.Errorf("metrics.address %s: --listen %q, want %q", tc.address, cfg.Listen, tc.listen)
		}
		checkProbes(t, "metrics.address "+tc.address, c, tc.probeHost)
	}
}

// checkProbes checks that both probes GET the installer on host.
func checkProbes(t *testing.T, what string, c *corev1.Container, host string) {
	t.Helper()
	for probe, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != host {
			t.Errorf("%s: %s probe %+v, want a GET on host %q", what, probe, p, host)
		}
	}
}

// The component no-plugin-kubeconfig and the chart's pluginKubeconfig=false
// render the same DaemonSet, whose installer writes no kubeconfig and names
// none in the plugin's entry; by default it does both.
func TestNoPluginKubeconfig(t *testing.T) {
	if cfg := installerConfig(t, load(t).ds.Spec.Template.Spec.Containers[0]); cfg.NoPluginKubeconfig || installer.NewEntry(cfg).Kubeconfig == "" {
		t.Errorf("default: no plugin kubeconfig (%+v)", cfg)
	}
	r := renderKustomize(t, zeroImage, "no-plugin-kubeconfig").withoutManagedBy()
	cfg := installerConfig(t, r.daemonSet(t).Spec.Template.Spec.Containers[0])
	if !cfg.NoPluginKubeconfig || installer.NewEntry(cfg).Kubeconfig != "" {
		t.Errorf("component: config %+v, entry %+v", cfg, installer.NewEntry(cfg))
	}
	chart := renderChart(t, map[string]any{"namespace": map[string]any{"create": true}, "pluginKubeconfig": false}).withoutManagedBy()
	if diff := cmp.Diff(r, chart); diff != "" {
		t.Errorf("chart with pluginKubeconfig=false differs from the component (-kustomize +chart):\n%s", diff)
	}
}
