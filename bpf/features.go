package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// CheckKernel reports every kernel feature mesh-accel needs and lacks:
// cgroup v2, the sockops, sk_msg and cgroup socket program types, and the
// sockhash and socket-storage map types. nil means the node can accelerate.
func CheckKernel() error {
	var missing []error
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
