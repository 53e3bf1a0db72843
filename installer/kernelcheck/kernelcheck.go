// Package kernelcheck is the installer's check of the node before it
// installs anything: the kernel's BPF features (asked of the engine), the
// host's cgroup v2 hierarchy, the capabilities and seccomp mode the
// installer runs with, and bpffs at the state's mount point, which it
// mounts as the init container ([MountBPFFS]). Every missing part is
// named, with what to do.
package kernelcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// Kernel is the engine's check of the kernel's BPF features
// (installer.Engine, bpf.CheckKernel).
type Kernel interface {
	// CheckKernel names the kernel features mesh-accel lacks (nil: none).
	CheckKernel() error
}

// Check names everything the node lacks: the engine's check (BPF
// program and map types, a cgroup v2 mount) and the host's cgroup v2
// hierarchy at cgroupRoot. When the host's hierarchy is cgroup v2 (or
// hybrid, with cgroup v2 at cgroupRoot/unified), the engine's complaint
// about a missing cgroup v2 mount is about the installer's container, whose
// /sys/fs/cgroup is a namespaced view (cgroup v1 on hybrid hosts), and is
// dropped. A process that may use bpf() but lacks CAP_PERFMON passes the
// engine's check and would fail later, on the verifier's log: it is
// named here.
func Check(engine Kernel, cgroupRoot string) error {
	kerr := engine.CheckKernel()
	if cgroupRoot == "" {
		return kerr
	}
	hostV2 := cgroupv2.IsCgroup2(cgroupRoot) || cgroupv2.IsCgroup2(filepath.Join(cgroupRoot, "unified"))
	var missing []error
	if !hostV2 {
		missing = append(missing, fmt.Errorf("no cgroup v2 hierarchy at %s or %s/unified (the host's cgroup root): "+
			"mesh-accel attaches to pods' cgroup v2 directories", cgroupRoot, cgroupRoot))
	}
	for _, err := range leaves(kerr) {
		if hostV2 && errors.Is(err, cgroupv2.ErrNoCgroup2) {
			continue
		}
		missing = append(missing, err)
	}
	if len(missing) == 0 {
		return perfmonMissing()
	}
	for _, err := range missing {
		if errors.Is(err, unix.EPERM) {
			return permissionError(errors.Join(missing...))
		}
	}
	return fmt.Errorf("the node cannot run mesh-accel, it lacks: %w", errors.Join(missing...))
}

// procSelfStatus is where the process reads its capabilities and seccomp
// mode (a variable for tests).
var procSelfStatus = "/proc/self/status"

// bpfCaps are the capabilities the installer needs (the DaemonSet adds
// them and drops every other).
var bpfCaps = []struct {
	bit  uint
	name string
}{{unix.CAP_BPF, "CAP_BPF"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_PERFMON, "CAP_PERFMON"}}

// permissionError says why bpf() was refused (cause: EPERM from the
// kernel check). Lacking a capability is the common reason; but a process
// that holds all three was refused by something else, and the most common
// one is the container runtime's default seccomp profile: containerd's
// before 1.6.9, and Debian 12's containers-common (Podman), allow bpf()
// and perf_event_open() only with CAP_SYS_ADMIN. The fix there is the
// pod's seccomp profile, not more capabilities.
func permissionError(cause error) error {
	st, err := readProcStatus(procSelfStatus)
	if err != nil {
		return fmt.Errorf("the installer may not use BPF (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON), "+
			"so the kernel's features could not be checked: %w", cause)
	}
	var lacking []string
	for _, c := range bpfCaps {
		// CAP_SYS_ADMIN stands for CAP_BPF and CAP_PERFMON.
		sysAdmin := c.bit != unix.CAP_NET_ADMIN && st.capEff&(1<<unix.CAP_SYS_ADMIN) != 0
		if st.capEff&(1<<c.bit) == 0 && !sysAdmin {
			lacking = append(lacking, c.name)
		}
	}
	switch {
	case len(lacking) > 0:
		return fmt.Errorf("the installer may not use BPF (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, "+
			"and lacks %s), so the kernel's features could not be checked: %w", strings.Join(lacking, ", "), cause)
	case st.seccomp == seccompModeFilter:
		return fmt.Errorf("the container runtime's seccomp profile refuses bpf() to the installer, although it holds "+
			"CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (default profiles that allow bpf() only with CAP_SYS_ADMIN: "+
			"containerd before 1.6.9, Debian 12's containers-common): set the chart value seccompProfile "+
			"to Unconfined, or to a Localhost profile that allows bpf() and perf_event_open() (kustomize: the pod's "+
			"securityContext.seccompProfile), so the kernel's features could not be checked: %w", cause)
	default:
		return fmt.Errorf("the installer may not use BPF (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and "+
			"holds them without a seccomp filter: a security module (SELinux, AppArmor), kernel lockdown or a "+
			"user namespace refuses bpf()), so the kernel's features could not be checked: %w", cause)
	}
}

// perfmonMissing says that the process lacks CAP_PERFMON while it may use
// bpf() (CAP_BPF): the engine's feature probes load programs without it,
// but the verifier refuses the sk_msg program, which calls
// bpf_skc_to_tcp_sock. CAP_SYS_ADMIN stands for both. Nil when the
// status cannot be read, or bpf() is not this process's to use.
func perfmonMissing() error {
	st, err := readProcStatus(procSelfStatus)
	if err != nil {
		return nil
	}
	has := func(c uint) bool { return st.capEff&(1<<c) != 0 || st.capEff&(1<<unix.CAP_SYS_ADMIN) != 0 }
	if !has(unix.CAP_BPF) || has(unix.CAP_PERFMON) {
		return nil
	}
	return errors.New("the installer may not use BPF (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and lacks " +
		"CAP_PERFMON, without which the verifier refuses the sk_msg program): add PERFMON to the installer's capabilities")
}

// seccompModeFilter is the Seccomp value of /proc/PID/status for a
// process under a seccomp filter (0: none, 1: strict).
const seccompModeFilter = 2

// procStatus is what permissionError reads of /proc/self/status.
type procStatus struct {
	capEff  uint64 // CapEff, the effective capability set
	seccomp int    // Seccomp; -1 when the kernel does not say
}

func readProcStatus(path string) (procStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStatus{}, err
	}
	st := procStatus{seccomp: -1}
	var haveCaps bool
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "CapEff":
			if st.capEff, err = strconv.ParseUint(val, 16, 64); err != nil {
				return procStatus{}, fmt.Errorf("%s: CapEff %q: %w", path, val, err)
			}
			haveCaps = true
		case "Seccomp":
			if st.seccomp, err = strconv.Atoi(val); err != nil {
				return procStatus{}, fmt.Errorf("%s: Seccomp %q: %w", path, val, err)
			}
		}
	}
	if !haveCaps {
		return procStatus{}, fmt.Errorf("%s: no CapEff", path)
	}
	return st, nil
}

// leaves unwraps err down to its joined errors (the engine returns one
// error wrapping the join of what is missing).
func leaves(err error) []error {
	for err != nil {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			return j.Unwrap()
		}
		next := errors.Unwrap(err)
		if next == nil {
			return []error{err}
		}
		err = next
	}
	return nil
}

// isBPFFS reports whether a bpffs is mounted at path.
func isBPFFS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.BPF_FS_MAGIC
}

// FlagMountBPFFS is the installer's flag that runs [MountBPFFS] only (the
// init container); the installer's configuration names it from here.
const FlagMountBPFFS = "mount-bpffs"

// MountBPFFS mounts bpffs at path unless one is mounted there already, and
// reports whether it mounted. In the DaemonSet's init container the mount
// propagates to the host (mountPropagation Bidirectional), where the plugin
// and the installer's main container find it.
func MountBPFFS(path string) (bool, error) {
	if isBPFFS(path) {
		return false, nil
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return false, fmt.Errorf("create bpffs mount point: %w", err)
	}
	if err := unix.Mount("bpf", path, "bpf", 0, "mode=0700"); err != nil {
		return false, fmt.Errorf("mount bpffs at %s: %w", path, err)
	}
	return true, nil
}

// RequireBPFFS fails, saying what to do, when no bpffs is mounted at path
// and this process may not mount one: state pinned on a bpffs private to
// the container would be invisible to the plugin on the host.
func RequireBPFFS(path string) error {
	if isBPFFS(path) {
		return nil
	}
	if _, err := MountBPFFS(path); err != nil {
		return fmt.Errorf("no bpffs at %s, and mounting one failed (the DaemonSet's init container, run with --%s, "+
			"mounts it on the host): %w", path, FlagMountBPFFS, err)
	}
	return nil
}
