//go:build meshbench

package demo

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// MinKernel is the oldest kernel the demo accepts (sockops, sk_msg, socket
// storage cloning, bpf_get_netns_cookie in sk_msg, bounded loops).
var MinKernel = [2]int{5, 15}

// Preflight names everything this machine lacks for the demo: root, a
// kernel of MinKernel or later, cgroup v2, the BPF features, the tools.
func Preflight() error {
	var missing []error
	if os.Geteuid() != 0 {
		missing = append(missing, errors.New("root privileges: run it as root (sudo make demo)"))
	}
	if rel, ok := kernelAtLeast(MinKernel); !ok {
		missing = append(missing, fmt.Errorf("a Linux kernel %d.%d or later (this one is %s)", MinKernel[0], MinKernel[1], rel))
	}
	if _, err := cgroupv2.Mount(); err != nil {
		missing = append(missing, fmt.Errorf("cgroup v2: %w", err))
	}
	if os.Geteuid() == 0 {
		if err := bpf.CheckKernel(); err != nil {
			missing = append(missing, err)
		}
	}
	for _, tool := range []string{"ip", "iptables", "ip6tables", "nsenter", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Errorf("the %s command (make deps installs it)", tool))
		}
	}
	if _, err := sim.EnvoyPath(); err != nil {
		missing = append(missing, fmt.Errorf("Envoy, the sidecars' proxy: %w", err))
	}
	if len(missing) > 0 {
		return fmt.Errorf("this machine cannot run the demo; missing:\n  - %w", joinLines(missing))
	}
	return nil
}

func joinLines(errs []error) error {
	s := make([]string, len(errs))
	for i, e := range errs {
		s[i] = e.Error()
	}
	return errors.New(strings.Join(s, "\n  - "))
}

// kernelAtLeast reports the running kernel's release and whether it is at
// least min (major, minor).
func kernelAtLeast(min [2]int) (string, bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown", false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return rel, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(leadingDigits(parts[1]))
	if err1 != nil || err2 != nil {
		return rel, false
	}
	return rel, major > min[0] || (major == min[0] && minor >= min[1])
}

// leadingDigits returns the digits s starts with ("15" of "15-rc1").
func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}
