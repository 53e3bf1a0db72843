package installer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// checkKernel names everything the node lacks: the engine's check (BPF
// program and map types, a cgroup v2 mount) and the host's cgroup v2
// hierarchy at cgroupRoot. When the host's hierarchy is cgroup v2 (or
// hybrid, with cgroup v2 at cgroupRoot/unified), the engine's complaint
// about a missing cgroup v2 mount is about the installer's container, whose
// /sys/fs/cgroup is a namespaced view (cgroup v1 on hybrid hosts), and is
// dropped.
func checkKernel(engine Engine, cgroupRoot string) error {
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
		return nil
	}
	for _, err := range missing {
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("the installer may not use BPF (it needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON), "+
				"so the kernel's features could not be checked: %w", errors.Join(missing...))
		}
	}
	return fmt.Errorf("the node cannot run mesh-accel, it lacks: %w", errors.Join(missing...))
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

// requireBPFFS fails, saying what to do, when no bpffs is mounted at path
// and this process may not mount one: state pinned on a bpffs private to
// the container would be invisible to the plugin on the host.
func requireBPFFS(path string) error {
	if isBPFFS(path) {
		return nil
	}
	if _, err := MountBPFFS(path); err != nil {
		return fmt.Errorf("no bpffs at %s, and mounting one failed (the DaemonSet's init container, run with --%s, "+
			"mounts it on the host): %w", path, FlagMountBPFFS, err)
	}
	return nil
}
