package runtime

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/mesh-accel/mesh-accel/manifests/render"
)

// The release the chart is rendered as, and the oldest Kubernetes its
// Chart.yaml admits (helm template --kube-version).
const (
	releaseName      = "mesh-accel"
	releaseNamespace = "mesh-accel"
	kubeVersion      = "v1.30.0"
)

// renderedPod is the DaemonSet's pod as the chart renders it: the pod spec,
// its installer container and the ConfigMap its rules volume names.
type renderedPod struct {
	spec      corev1.PodSpec
	installer corev1.Container
	configMap *corev1.ConfigMap
}

// renderChart renders the chart as `helm template` does (values checked
// against values.schema.json, the chart's kubeVersion), with values over
// values.yaml, and picks the DaemonSet's pod and the rules ConfigMap,
// decoded strictly into their k8s.io/api types.
func renderChart(t *testing.T, values map[string]any) renderedPod {
	t.Helper()
	c, err := render.LoadChart()
	if err != nil {
		t.Fatal(err)
	}
	manifest, _, err := render.Template(c, releaseName, releaseNamespace, values, kubeVersion)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	var (
		ds  *appsv1.DaemonSet
		pod renderedPod
	)
	for _, doc := range bytes.Split([]byte(manifest), []byte("\n---")) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			t.Fatalf("rendered document: %v", err)
		}
		switch tm.Kind {
		case "DaemonSet":
			ds = &appsv1.DaemonSet{}
			if err := yaml.UnmarshalStrict(doc, ds); err != nil {
				t.Fatalf("DaemonSet: %v", err)
			}
		case "ConfigMap":
			cm := &corev1.ConfigMap{}
			if err := yaml.UnmarshalStrict(doc, cm); err != nil {
				t.Fatalf("ConfigMap: %v", err)
			}
			if cm.Name == "mesh-accel-rules" {
				pod.configMap = cm
			}
		}
	}
	if ds == nil || pod.configMap == nil {
		t.Fatal("the chart rendered no DaemonSet or no rules ConfigMap")
	}
	pod.spec = ds.Spec.Template.Spec
	for _, c := range pod.spec.Containers {
		if c.Name == "installer" {
			pod.installer = c
		}
	}
	if pod.installer.Name == "" {
		t.Fatal("the DaemonSet has no installer container")
	}
	return pod
}

// node is what the kubelet knows of the machine it runs the pod on.
type node struct {
	hostIP string // status.hostIP (and status.podIP: the pod uses the host network)
	// hostPaths replaces hostPath volumes' paths by test folders; a
	// volume mounted at its own host path (bpffs, state, log: the same
	// path in the container as on the host, which the plugin on the host
	// relies on) keeps that identity, so its container path follows.
	hostPaths map[string]string
	// volumes holds the kubelet's own volumes: the ConfigMap's files and
	// the service account's token, by volume name (serviceAccountVolume).
	volumeDirs map[string]string
	// serviceEnv is what the kubelet adds for the cluster's services
	// (KUBERNETES_SERVICE_HOST...).
	serviceEnv map[string]string
}

// serviceAccountVolume names the token volume the admission plugin adds
// to a pod with automountServiceAccountToken.
const (
	serviceAccountVolume = "kube-api-access"
	serviceAccountPath   = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// criMount is a CRI mount (k8s.io/cri-api runtime.Mount): what the kubelet
// asks the runtime to bind.
type criMount struct {
	containerPath, hostPath string
	readonly                bool
	propagation             string // private, rslave (HostToContainer) or rshared (Bidirectional)
}

// criContainer is what the kubelet asks the runtime for (the parts of
// CRI's ContainerConfig and PodSandboxConfig that the OCI spec depends on).
type criContainer struct {
	args           []string
	env            []string // KEY=VALUE, in order
	mounts         []criMount
	hostNetwork    bool
	privileged     bool
	noNewPrivs     bool
	readonlyRootfs bool
	runAsUser      *int64
	addCaps        []string // as written in the pod: BPF, not CAP_BPF
	dropCaps       []string
	cpuShares      uint64
	memoryLimit    int64
	oomScoreAdj    int // 0: none set
	seccomp        corev1.SeccompProfileType
	appArmor       corev1.AppArmorProfileType // "" when the pod sets none
}

// kubelet turns the rendered pod into the runtime's request on node n, as
// the kubelet does: the environment with the downward API's values and
// $(NAME) references expanded, the volumes as host paths (created when
// their type says DirectoryOrCreate), the security context and the
// resources.
func kubelet(t *testing.T, pod renderedPod, n node) criContainer {
	t.Helper()
	c := pod.installer
	out := criContainer{
		args:        append(append([]string(nil), c.Command...), c.Args...),
		hostNetwork: pod.spec.HostNetwork,
	}
	env := map[string]string{}
	for k, v := range n.serviceEnv {
		env[k] = v
		out.env = append(out.env, k+"="+v)
	}
	sort.Strings(out.env)
	for _, e := range c.Env {
		v := expandEnv(e.Value, env)
		switch {
		case e.ValueFrom == nil:
		case e.ValueFrom.FieldRef != nil && (e.ValueFrom.FieldRef.FieldPath == "status.hostIP" ||
			e.ValueFrom.FieldRef.FieldPath == "status.podIP" && pod.spec.HostNetwork):
			v = n.hostIP
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
			lim, ok := c.Resources.Limits[corev1.ResourceMemory]
			if !ok {
				t.Fatalf("env %s: limits.memory of a container without a memory limit (the node's allocatable)", e.Name)
			}
			v = strconv.FormatInt(lim.Value(), 10)
		default:
			t.Fatalf("env %s: the test's kubelet does not resolve %+v", e.Name, e.ValueFrom)
		}
		env[e.Name] = v
		out.env = append(out.env, e.Name+"="+v)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Fatalf("volume mount %s: no such volume", m.Name)
		}
		cm := criMount{containerPath: m.MountPath, readonly: m.ReadOnly, propagation: "private"}
		if m.MountPropagation != nil {
			switch *m.MountPropagation {
			case corev1.MountPropagationHostToContainer:
				cm.propagation = "rslave"
			case corev1.MountPropagationBidirectional:
				cm.propagation = "rshared"
			}
		}
		switch {
		case v.HostPath != nil:
			cm.hostPath = v.HostPath.Path
			if p, ok := n.hostPaths[v.HostPath.Path]; ok {
				cm.hostPath = p
				if filepath.Clean(m.MountPath) == filepath.Clean(v.HostPath.Path) {
					cm.containerPath = p
				}
			}
			typ := corev1.HostPathUnset
			if v.HostPath.Type != nil {
				typ = *v.HostPath.Type
			}
			switch typ {
			case corev1.HostPathDirectoryOrCreate:
				if err := os.MkdirAll(cm.hostPath, 0o755); err != nil {
					t.Fatal(err)
				}
			case corev1.HostPathDirectory:
				if st, err := os.Stat(cm.hostPath); err != nil || !st.IsDir() {
					t.Fatalf("hostPath %s (type Directory): %v", cm.hostPath, err)
				}
			default:
				t.Fatalf("hostPath %s: type %q not handled by the test's kubelet", cm.hostPath, typ)
			}
		case v.ConfigMap != nil:
			if v.ConfigMap.Name != pod.configMap.Name {
				t.Fatalf("volume %s: ConfigMap %s not rendered", m.Name, v.ConfigMap.Name)
			}
			dir := n.volumeDirs[m.Name]
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for k, data := range pod.configMap.Data {
				if err := os.WriteFile(filepath.Join(dir, k), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cm.hostPath, cm.readonly = dir, true // the kubelet mounts ConfigMaps read-only
		default:
			t.Fatalf("volume %s: kind not handled by the test's kubelet", m.Name)
		}
		out.mounts = append(out.mounts, cm)
	}
	if pod.spec.AutomountServiceAccountToken == nil || *pod.spec.AutomountServiceAccountToken {
		out.mounts = append(out.mounts, criMount{containerPath: serviceAccountPath,
			hostPath: n.volumeDirs[serviceAccountVolume], readonly: true, propagation: "private"})
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("the installer has no securityContext")
	}
	out.privileged = sc.Privileged != nil && *sc.Privileged
	// The kubelet: no_new_privs unless privilege escalation is allowed
	// (unset means allowed).
	out.noNewPrivs = sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation
	out.readonlyRootfs = sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem
	out.runAsUser = sc.RunAsUser
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			out.addCaps = append(out.addCaps, string(c))
		}
		for _, c := range sc.Capabilities.Drop {
			out.dropCaps = append(out.dropCaps, string(c))
		}
	}
	out.seccomp = corev1.SeccompProfileTypeUnconfined // the kubelet's default when the pod names none
	if psc := pod.spec.SecurityContext; psc != nil && psc.SeccompProfile != nil {
		out.seccomp = psc.SeccompProfile.Type
	}
	if sc.SeccompProfile != nil {
		out.seccomp = sc.SeccompProfile.Type
	}
	if sc.AppArmorProfile != nil {
		out.appArmor = sc.AppArmorProfile.Type
	}

	// Resources as the kubelet converts them (cgroupfs driver): CPU shares
	// from the request, the memory limit in bytes; a node-critical pod's
	// OOM score adjustment.
	if cpu, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		out.cpuShares = max(uint64(cpu.MilliValue())*1024/1000, 2)
	}
	if mem, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		out.memoryLimit = mem.Value()
	}
	if pc := pod.spec.PriorityClassName; pc == "system-node-critical" || pc == "system-cluster-critical" {
		out.oomScoreAdj = -997
	}
	return out
}

// expandEnv expands $(NAME) of the variables defined so far, as the
// kubelet does; $$ is a $, an unknown $(NAME) stays.
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

// nodeIP is this machine's address as a node's status.hostIP would give
// it: the source address of its route to the outside, else loopback (a
// machine without a default route).
func nodeIP() string {
	routes, err := netlink.RouteGet(net.IPv4(192, 0, 2, 1)) // TEST-NET-1: a route lookup, no packet
	if err == nil && len(routes) > 0 && routes[0].Src != nil && !routes[0].Src.IsLoopback() {
		return routes[0].Src.String()
	}
	return "127.0.0.1"
}

// freePort returns a TCP port free on ip right now.
func freePort(t *testing.T, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// probeURL is the URL the kubelet's HTTP probe requests: the probe's host,
// else the pod's IP (the node's, on the host network).
func probeURL(p *corev1.Probe, podIP string) string {
	host := p.HTTPGet.Host
	if host == "" {
		host = podIP
	}
	return fmt.Sprintf("http://%s%s", net.JoinHostPort(host, p.HTTPGet.Port.String()), p.HTTPGet.Path)
}
