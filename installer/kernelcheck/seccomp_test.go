package kernelcheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// withProcStatus makes the kernel check read status (the text of a
// /proc/PID/status) as its own for the test.
func withProcStatus(t *testing.T, status string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(p, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	old := procSelfStatus
	procSelfStatus = p
	t.Cleanup(func() { procSelfStatus = old })
}

// procStatusText is the part of /proc/PID/status the check reads, as the
// kernel writes it.
func procStatusText(capEff uint64, seccomp int) string {
	return fmt.Sprintf("Name:\tmesh-accel-inst\nUmask:\t0022\nState:\tS (sleeping)\nCapInh:\t0000000000000000\n"+
		"CapPrm:\t%016x\nCapEff:\t%016x\nCapBnd:\t%016x\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"+
		"Seccomp:\t%d\nSeccomp_filters:\t1\n", capEff, capEff, capEff, seccomp)
}

// The DaemonSet's capability set: BPF, NET_ADMIN and PERFMON only.
const daemonSetCaps = 1<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN | 1<<unix.CAP_PERFMON

// bpf() refused (EPERM) to a process that holds the three capabilities
// under a seccomp filter: the runtime's seccomp profile is named with the
// chart value that fixes it, and no capability is said to be missing. A
// process that lacks one is told which; one that holds them without a
// filter hears of security modules and user namespaces; without
// /proc/self/status the message is the general one.
func TestCheckKernelPermissionReason(t *testing.T) {
	noPerm := fmt.Errorf("kernel lacks what mesh-accel needs: %w", errors.Join(fmt.Errorf("sockops programs: %w", unix.EPERM)))
	for _, tc := range []struct {
		name       string
		status     string // "" for no status file
		want, nots []string
	}{
		{"seccomp filter", procStatusText(daemonSetCaps, seccompModeFilter),
			[]string{"seccomp profile refuses bpf()", "seccompProfile", "Unconfined", "Localhost", "holds CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", "sockops programs"},
			[]string{"needs CAP_BPF", "lacks CAP_"}},
		{"seccomp filter, more capabilities", procStatusText(0x000001ffffffffff, seccompModeFilter),
			[]string{"seccomp profile refuses bpf()", "seccompProfile"}, []string{"needs CAP_BPF"}},
		{"no PERFMON", procStatusText(1<<unix.CAP_BPF|1<<unix.CAP_NET_ADMIN, seccompModeFilter),
			[]string{"needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", "lacks CAP_PERFMON", "sockops programs"},
			[]string{"seccomp", "lacks CAP_BPF", "CAP_NET_ADMIN)"}},
		{"SYS_ADMIN for BPF and PERFMON", procStatusText(1<<unix.CAP_SYS_ADMIN|1<<unix.CAP_NET_ADMIN, seccompModeFilter),
			[]string{"seccomp profile refuses bpf()"}, []string{"lacks CAP_"}},
		{"none of them", procStatusText(1<<unix.CAP_CHOWN, 0),
			[]string{"lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON"}, []string{"seccomp"}},
		{"no filter", procStatusText(daemonSetCaps, 0),
			[]string{"holds them without a seccomp filter", "security module", "user namespace"}, []string{"seccompProfile", "lacks CAP_"}},
		{"no status", "", []string{"needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", "sockops programs"}, []string{"seccomp"}},
		{"unreadable status", "Name:\tx\nCapEff:\tnot-hex\n", []string{"needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"}, []string{"seccomp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status != "" {
				withProcStatus(t, tc.status)
			} else {
				old := procSelfStatus
				procSelfStatus = filepath.Join(t.TempDir(), "absent")
				t.Cleanup(func() { procSelfStatus = old })
			}
			// A host root without cgroup v2 (a temporary folder): its
			// complaint joins the engine's EPERM, which decides the message.
			err := Check(&fakeEngine{kernelErr: noPerm}, t.TempDir())
			if err == nil {
				t.Fatal("checkKernel = nil")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v\nwant %q named", err, w)
				}
			}
			for _, n := range tc.nots {
				if strings.Contains(err.Error(), n) {
					t.Errorf("%v\n%q should not be named", err, n)
				}
			}
		})
	}
}

// The process's own status parses: the test process has some CapEff and
// a Seccomp mode from 0 to 2 (kernels since 3.8 report it).
func TestReadProcStatusSelf(t *testing.T) {
	st, err := readProcStatus("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if st.seccomp < 0 || st.seccomp > seccompModeFilter {
		t.Errorf("Seccomp %d", st.seccomp)
	}
}

// A process that may use bpf() (CAP_BPF) but lacks CAP_PERFMON passes the
// engine's probes: the check names CAP_PERFMON rather than let the
// verifier refuse the sk_msg program later. CAP_SYS_ADMIN stands for
// both; a process without CAP_BPF (the engine's probes decide) and one
// whose status cannot be read are left alone.
func TestCheckKernelPerfmon(t *testing.T) {
	mount, err := cgroupv2.Mount()
	if err != nil {
		testenv.Missing(t, "a cgroup v2 mount: %v", err)
	}
	v2Root := mount
	if filepath.Base(mount) == "unified" {
		v2Root = filepath.Dir(mount)
	}
	for _, tc := range []struct {
		name   string
		capEff uint64
		want   string // "" for no error
	}{
		{"the three", daemonSetCaps, ""},
		{"no PERFMON", 1<<unix.CAP_BPF | 1<<unix.CAP_NET_ADMIN, "lacks CAP_PERFMON, without which the verifier refuses the sk_msg program"},
		{"SYS_ADMIN", 1<<unix.CAP_SYS_ADMIN | 1<<unix.CAP_NET_ADMIN, ""},
		{"no BPF either", 1 << unix.CAP_NET_ADMIN, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			withProcStatus(t, procStatusText(tc.capEff, seccompModeFilter))
			err := Check(&fakeEngine{}, v2Root)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("checkKernel = %v, want %q", err, tc.want)
			}
		})
	}
	old := procSelfStatus
	procSelfStatus = filepath.Join(t.TempDir(), "absent")
	defer func() { procSelfStatus = old }()
	if err := Check(&fakeEngine{}, v2Root); err != nil {
		t.Errorf("without a status: %v", err)
	}
}
