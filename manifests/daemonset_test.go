package manifests_test

import (
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// The DaemonSet runs on every node (tolerations, node-critical priority),
// rolls one node at a time, has a readiness probe on the installer's
// /readyz and resource requests for every container.
func TestDaemonSetScheduling(t *testing.T) {
	ds := load(t).ds
	spec := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template", k, v)
		}
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0] != (corev1.Toleration{Operator: corev1.TolerationOpExists}) {
		t.Errorf("tolerations %+v: want one with operator Exists only (every taint)", spec.Tolerations)
	}
	if u := ds.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 1 {
		t.Errorf("update strategy %+v", u)
	}
	if !spec.HostNetwork || spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Error("the installer must use the host network (it runs before the pod network)")
	}
	for _, c := range allContainers(ds) {
		r := c.Resources.Requests
		if r.Cpu().IsZero() || r.Memory().IsZero() {
			t.Errorf("container %s: requests %v", c.Name, r)
		}
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	cfg := installerConfig(t, c)
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != installer.PathReady || p.HTTPGet.Port.String() != port {
		t.Fatalf("readiness probe %+v, want GET %s on port %s", p, installer.PathReady, port)
	}
	l := c.LivenessProbe
	if l == nil || l.HTTPGet == nil || l.HTTPGet.Path != installer.PathLive || l.HTTPGet.Port.String() != port {
		t.Fatalf("liveness probe %+v, want GET %s on port %s", l, installer.PathLive, port)
	}
	if window := l.PeriodSeconds * l.FailureThreshold; window < 30 {
		t.Errorf("liveness restarts after %d s without an answer: too eager for a busy node", window)
	}
	if len(c.Ports) != 1 || strconv.Itoa(int(c.Ports[0].ContainerPort)) != port {
		t.Errorf("ports %+v", c.Ports)
	}
	if cfg.RemoveBPFOnExit {
		t.Error("the default install removes node state on every restart: upgrades would drop acceleration")
	}
}

// Least privilege: the long-running container adds only BPF, NET_ADMIN and
// PERFMON to nothing, and is not privileged; the only privileged container
// is the init container that mounts bpffs (Bidirectional propagation
// requires it) and mounts nothing else.
func TestDaemonSetPrivileges(t *testing.T) {
	spec := load(t).ds.Spec.Template.Spec
	c := spec.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("installer container has no capabilities set")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("installer container is privileged")
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("drop %v, want ALL", sc.Capabilities.Drop)
	}
	add := append([]corev1.Capability(nil), sc.Capabilities.Add...)
	slices.Sort(add)
	if !slices.Equal(add, []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON"}) {
		t.Errorf("capabilities %v, want BPF, NET_ADMIN, PERFMON", add)
	}
	if psc := spec.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v: want seccompProfile RuntimeDefault", psc)
	}
	for _, c := range allContainers(load(t).ds) {
		if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
			t.Errorf("container %s overrides the pod's seccomp profile", c.Name)
		}
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("installer container: want a read-only root and no privilege escalation")
	}
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers", len(spec.InitContainers))
	}
	ic := spec.InitContainers[0]
	if !installerConfig(t, ic).MountBPFFS {
		t.Errorf("init container %s does more than mount bpffs: %v", ic.Name, ic.Command)
	}
	if ic.SecurityContext == nil || ic.SecurityContext.Privileged == nil || !*ic.SecurityContext.Privileged {
		t.Error("init container must be privileged for Bidirectional propagation")
	}
	if len(ic.VolumeMounts) != 1 || ic.VolumeMounts[0].MountPath != nodestate.DefaultBPFFS ||
		ic.VolumeMounts[0].MountPropagation == nil || *ic.VolumeMounts[0].MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("init container mounts %+v: want only bpffs, Bidirectional", ic.VolumeMounts)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
			t.Errorf("unprivileged container mounts %s Bidirectional (Kubernetes refuses it)", m.Name)
		}
	}
}

// Every path the installer uses is mounted from the host path the plugin
// sees: for each flag, the container path maps through the volume mounts to
// the host path the conflist entry names.
func TestDaemonSetMounts(t *testing.T) {
	ds := load(t).ds
	c := ds.Spec.Template.Spec.Containers[0]
	cfg := installerConfig(t, c)
	volumes := map[string]corev1.Volume{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, tc := range []struct {
		flag, container, host string
		propagation           corev1.MountPropagationMode
		readOnly              bool
	}{
		{installer.FlagHostCNIBinDir, cfg.HostCNIBinDir, "/opt/cni/bin", "", false},
		{installer.FlagHostCNIConfDir, cfg.HostCNIConfDir, "/etc/cni/net.d", "", false},
		{installer.FlagKubeconfigPath, cfg.KubeconfigPath, cfg.HostKubeconfigPath, "", false},
		{installer.FlagRulesCopyPath, cfg.RulesCopyPath, cfg.HostRulesFile, "", false},
		{installer.FlagBPFFS, cfg.BPFFS, cfg.BPFFS, corev1.MountPropagationHostToContainer, false},
		{installer.FlagCgroupRoot, cfg.CgroupRoot, "/sys/fs/cgroup", corev1.MountPropagationHostToContainer, true},
		{installer.FlagStateDir, cfg.StateDir, cfg.StateDir, "", false},
		{installer.FlagPluginLogFile, path.Dir(cfg.PluginLogFile), path.Dir(cfg.PluginLogFile), "", false},
	} {
		m, rel := mountOf(c, tc.container)
		if m == nil {
			t.Errorf("--%s %s: not on a volume", tc.flag, tc.container)
			continue
		}
		v := volumes[m.Name]
		if v.HostPath == nil {
			t.Errorf("--%s: volume %s is not a hostPath", tc.flag, m.Name)
			continue
		}
		if got := path.Join(v.HostPath.Path, rel); got != tc.host {
			t.Errorf("--%s %s is %s on the host, want %s", tc.flag, tc.container, got, tc.host)
		}
		prop := corev1.MountPropagationMode("")
		if m.MountPropagation != nil {
			prop = *m.MountPropagation
		}
		if prop != tc.propagation || m.ReadOnly != tc.readOnly {
			t.Errorf("--%s: mount %s propagation %q readOnly %v", tc.flag, m.Name, prop, m.ReadOnly)
		}
	}
	m, rel := mountOf(c, cfg.RulesFile)
	if m == nil || volumes[m.Name].ConfigMap == nil || volumes[m.Name].ConfigMap.Name != load(t).rules.Name || rel != path.Base(cfg.RulesFile) {
		t.Errorf("--%s %s is not the rules ConfigMap's key", installer.FlagRulesFile, cfg.RulesFile)
	}
	if strings.HasPrefix(cfg.HostKubeconfigPath, "/etc/cni/net.d/") {
		t.Error("the kubeconfig is inside the CNI config directory")
	}
}

// mountOf returns the container's volume mount holding p (the deepest) and
// p relative to it.
func mountOf(c corev1.Container, p string) (*corev1.VolumeMount, string) {
	var best *corev1.VolumeMount
	for i, m := range c.VolumeMounts {
		if (p == m.MountPath || strings.HasPrefix(p, m.MountPath+"/")) && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &c.VolumeMounts[i]
		}
	}
	if best == nil {
		return nil, ""
	}
	return best, strings.TrimPrefix(strings.TrimPrefix(p, best.MountPath), "/")
}
