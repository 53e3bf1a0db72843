package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The kubelet's masked and read-only /proc and /sys paths of a container
// with the default procMount (k8s.io/kubernetes pkg/securitycontext,
// DefaultMaskedPaths and DefaultReadonlyPaths), which it passes to CRI and
// CRI puts in the spec in place of containerd's own.
var (
	kubeletMaskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap"}
	kubeletReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// ociSpec builds the OCI runtime spec of c as containerd's CRI plugin
// (internal/cri/server buildLinuxSpec, v2) does, with containerd's own
// spec package: its default Linux spec, then CRI's options in CRI's order.
// CRI's own helpers (internal/cri/opts) cannot be imported; the few this
// needs are written here after them: the mounts (withMounts), the
// capabilities (WithCapabilities), the security defaults it clears. The
// root file system is the image's, at rootfs; RuntimeDefault seccomp is
// the profile the runtime under test makes (profile), applied last as CRI
// applies it, after the capabilities.
func ociSpec(t *testing.T, c criContainer, id, rootfs, cgroupsPath string, profile seccompSource) *specs.Spec {
	t.Helper()
	hostname, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	opts := []oci.SpecOpts{
		oci.WithoutRunMount,
		withoutDefaultSecuritySettings,
		oci.WithRootFSPath(rootfs),
		oci.WithProcessArgs(c.args...),
		oci.WithDefaultPathEnv,
		oci.WithNewPrivileges,
		oci.WithEnv([]string{"HOSTNAME=" + hostname}),
		// The image's config has no Env (Containerfile): the container's.
		oci.WithEnv(c.env),
	}
	// cgroup namespaces on cgroup v2 hosts only (not on hybrid or v1
	// hosts), as CRI decides.
	if unifiedCgroups() && !c.privileged {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.CgroupNamespace}))
	}
	opts = append(opts, withCRIMounts(t, c.mounts),
		oci.WithMaskedPaths(kubeletMaskedPaths), oci.WithReadonlyPaths(kubeletReadonlyPaths),
		withCRICapabilities(c.addCaps, c.dropCaps), withoutAmbientCaps)
	if c.privileged {
		t.Fatal("a privileged container: not what this test runs")
	}
	if c.noNewPrivs {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if c.readonlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if c.cpuShares > 0 {
		opts = append(opts, oci.WithCPUShares(c.cpuShares))
	}
	if c.memoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(c.memoryLimit)))
	}
	opts = append(opts, oci.WithCgroup(cgroupsPath))
	if c.oomScoreAdj != 0 {
		adj := restrictOOMScoreAdj(t, c.oomScoreAdj)
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
			s.Process.OOMScoreAdj = &adj
			return nil
		})
	}
	if c.hostNetwork {
		// CRI: a host-network pod shares the host's network and UTS
		// namespaces; its PID and IPC namespaces are the sandbox's (new
		// ones here: there is no sandbox container).
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace), oci.WithHostNamespace(specs.UTSNamespace))
	}
	// runAsUser, else the image's USER (0:0): CRI's WithUser, which looks
	// the uid up in the image's /etc/passwd (scratch has none: gid 0).
	user := "0:0"
	if c.runAsUser != nil {
		user = strconv.FormatInt(*c.runAsUser, 10)
	}
	opts = append(opts, oci.WithUser(user))
	switch c.seccomp {
	case corev1.SeccompProfileTypeRuntimeDefault:
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
			s.Linux.Seccomp = profile.profile(t, s)
			return nil
		})
	case corev1.SeccompProfileTypeUnconfined:
	default:
		t.Fatalf("seccomp profile type %q: not handled by the test", c.seccomp)
	}
	// AppArmor: the chart asks for Unconfined, which is what a runtime
	// without AppArmor (this machine) gives; SELinux labels likewise.
	if c.appArmor != "" && c.appArmor != corev1.AppArmorProfileTypeUnconfined {
		t.Fatalf("AppArmor profile %q: not handled by the test", c.appArmor)
	}

	ctx := namespaces.WithNamespace(context.Background(), "k8s.io")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		t.Fatalf("generate the OCI spec: %v", err)
	}
	return s
}

// withoutDefaultSecuritySettings is CRI's WithoutDefaultSecuritySettings:
// no default AppArmor profile or seccomp filter, and none of containerd's
// default rlimits (the container inherits the runtime's).
func withoutDefaultSecuritySettings(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	s.Process.ApparmorProfile = ""
	s.Linux.Seccomp = nil
	s.Process.Rlimits = nil
	return nil
}

// withoutAmbientCaps is CRI's WithoutAmbientCaps.
func withoutAmbientCaps(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	s.Process.Capabilities.Ambient = nil
	return nil
}

// withCRICapabilities is CRI's WithCapabilities: "ALL" dropped first, then
// each capability added or dropped, named with CAP_. (CRI also adds every
// capability for add: ALL, which the chart never asks for.)
func withCRICapabilities(add, drop []string) oci.SpecOpts {
	var opts []oci.SpecOpts
	if slices.Contains(drop, "ALL") {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	prefixed := func(caps []string) []string {
		var out []string
		for _, c := range caps {
			if strings.ToUpper(c) != "ALL" {
				out = append(out, "CAP_"+strings.ToUpper(c))
			}
		}
		return out
	}
	opts = append(opts, oci.WithAddedCapabilities(prefixed(add)), oci.WithDroppedCapabilities(prefixed(drop)))
	return oci.Compose(opts...)
}

// withCRIMounts is CRI's withMounts: a read-only cgroup file system at
// /sys/fs/cgroup, the default mounts that the container's own do not
// replace, then the container's, sorted by depth, each an rbind with its
// propagation and ro or rw. CRI refuses a HostToContainer mount whose
// source is neither shared nor slave on the host; this machine's mounts
// are private (no systemd), so the test says so instead.
func withCRIMounts(t *testing.T, mounts []criMount) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
		sorted := slices.Clone(mounts)
		slices.SortStableFunc(sorted, func(a, b criMount) int {
			return len(strings.Split(filepath.Clean(a.containerPath), "/")) - len(strings.Split(filepath.Clean(b.containerPath), "/"))
		})
		s.Mounts = append(s.Mounts, specs.Mount{Source: "cgroup", Destination: "/sys/fs/cgroup", Type: "cgroup",
			Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}})
		own := map[string]bool{}
		for _, m := range sorted {
			own[filepath.Clean(m.containerPath)] = true
		}
		defaults := s.Mounts
		s.Mounts = nil
		for _, m := range defaults {
			if !own[filepath.Clean(m.Destination)] {
				s.Mounts = append(s.Mounts, m)
			}
		}
		for _, m := range sorted {
			src, err := filepath.EvalSymlinks(m.hostPath)
			if err != nil {
				return err
			}
			options := []string{"rbind", m.propagation}
			switch m.propagation {
			case "rshared":
				s.Linux.RootfsPropagation = "rshared"
			case "rslave":
				if s.Linux.RootfsPropagation != "rshared" {
					s.Linux.RootfsPropagation = "rslave"
				}
				if opt := hostPropagation(src); opt != "shared" && opt != "slave" {
					noteOnce(t, "note: %s is a %s mount on this machine; CRI would refuse it for HostToContainer "+
						"(nodes under systemd mount / shared), runc binds it as asked", src, opt)
				}
			}
			if m.readonly {
				options = append(options, "ro")
			} else {
				options = append(options, "rw")
			}
			s.Mounts = append(s.Mounts, specs.Mount{Source: src, Destination: m.containerPath, Type: "bind", Options: options})
		}
		return nil
	}
}

// hostPropagation is the propagation of the mount that holds path in
// this process's mount namespace: shared, slave or private.
func hostPropagation(path string) string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	best, prop := "", "private"
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		mp := fields[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, prop = mp, "private"
			for _, opt := range fields[6:] {
				if opt == "-" {
					break
				}
				if strings.HasPrefix(opt, "shared:") {
					prop = "shared"
				} else if strings.HasPrefix(opt, "master:") && prop != "shared" {
					prop = "slave"
				}
			}
		}
	}
	return prop
}

// unifiedCgroups reports whether the host runs cgroup v2 only (CRI's
// isUnifiedCgroupsMode): /sys/fs/cgroup is a cgroup2 file system.
func unifiedCgroups() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// restrictOOMScoreAdj is containerd's restrict_oom_score_adj, which a
// runtime that may not lower OOM scores needs (this sandbox refuses it to
// root): the kubelet's adjustment, or the runtime's own when that is
// higher and lowering it is refused.
func restrictOOMScoreAdj(t *testing.T, adj int) int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return adj
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || adj >= cur {
		return adj
	}
	probe := exec.Command("/bin/sh", "-c", "echo "+strconv.Itoa(adj)+" >/proc/self/oom_score_adj")
	if probe.Run() == nil {
		return adj
	}
	noteOnce(t, "note: this machine refuses to lower OOM scores: oom_score_adj %d (containerd's restrict_oom_score_adj), "+
		"not the kubelet's %d", cur, adj)
	return cur
}

// notes are what noteOnce logged.
var notes sync.Map

// noteOnce logs a note about the machine once per test run.
func noteOnce(t *testing.T, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if _, seen := notes.LoadOrStore(msg, true); !seen {
		t.Log(msg)
	}
}
