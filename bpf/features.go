package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// MinKernel is the oldest kernel release the data path is tested on: the
// kernel matrix (make test-kernels) runs its tests on Debian's 6.1 and 6.12
// and on 6.18. Sockmap's behaviour changed across releases (how redirected
// bytes are charged, FIONREAD, the data-loss fixes of 6.16), so an older
// kernel is refused rather than trusted.
var MinKernel = [2]int{6, 1}

// CheckKernel reports every kernel feature mesh-accel needs and lacks:
// a kernel release of at least MinKernel, cgroup v2, the sockops, sk_msg and
// cgroup socket program types, and the sockhash and socket-storage map
// types. nil means the node can accelerate.
func CheckKernel() error {
	var missing []error
	if err := CheckRelease(); err != nil {
		missing = append(missing, err)
	}
	if _, err := cgroupv2.Mount(); err != nil {
		missing = append(missing, err)
	}
	for _, p := range []struct {
		t    ebpf.ProgramType
		name string
	}{
		{ebpf.SockOps, "sockops programs"},
		{ebpf.SkMsg, "sk_msg programs"},
		{ebpf.CGroupSock, "cgroup/sock_create programs"},
	} {
		if err := features.HaveProgramType(p.t); err != nil {
			missing = append(missing, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	for _, m := range []struct {
		t    ebpf.MapType
		name string
	}{
		{ebpf.SockHash, "sockhash maps"},
		{ebpf.SkStorage, "socket-local storage maps"},
	} {
		if err := features.HaveMapType(m.t); err != nil {
			missing = append(missing, fmt.Errorf("%s: %w", m.name, err))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("kernel lacks what mesh-accel needs: %w", errors.Join(missing...))
	}
	return nil
}

// CheckRelease refuses a running kernel older than MinKernel. It costs one
// uname(2): OpenNode runs it, so that a CNI ADD on such a kernel fails (and
// the pod starts without acceleration) with the reason.
func CheckRelease() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("uname: %w", err)
	}
	return checkRelease(unix.ByteSliceToString(u.Release[:]), MinKernel)
}

// checkRelease refuses a kernel release ("5.15.0-91-generic") older than
// min.
func checkRelease(release string, min [2]int) error {
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("kernel release %q: cannot read its version", release)
	}
	if major < min[0] || major == min[0] && minor < min[1] {
		return fmt.Errorf("kernel %s is older than %d.%d, the oldest kernel mesh-accel is tested on", release, min[0], min[1])
	}
	return nil
}
