package kernelcheck

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// The kernel check names everything missing; the engine's complaint about
// no cgroup v2 mount is dropped when the host's cgroup root (mounted into
// the container) has cgroup v2, and a host without it is named.
func TestCheckKernel(t *testing.T) {
	mount, err := cgroupv2.Mount()
	if err != nil {
		testenv.Missing(t, "a cgroup v2 mount: %v", err)
	}
	v2Root := mount
	if filepath.Base(mount) == "unified" {
		v2Root = filepath.Dir(mount) // hybrid host: the check looks in <root>/unified
	}
	noCgroup := fmt.Errorf("kernel lacks what mesh-accel needs: %w", errors.Join(cgroupv2.ErrNoCgroup2))
	noMsg := fmt.Errorf("kernel lacks what mesh-accel needs: %w", errors.Join(cgroupv2.ErrNoCgroup2, errors.New("sk_msg programs: not supported")))
	noPerm := fmt.Errorf("kernel lacks what mesh-accel needs: %w", errors.Join(fmt.Errorf("sockops programs: %w", unix.EPERM)))
	for _, tc := range []struct {
		name       string
		engine     error
		root       string
		want, nots []string
	}{
		{"all there", nil, v2Root, nil, nil},
		{"container view only", noCgroup, v2Root, nil, nil},
		{"no root given", noCgroup, "", []string{"no cgroup v2 hierarchy mounted"}, nil},
		{"host without cgroup v2", nil, t.TempDir(), []string{"no cgroup v2 hierarchy at"}, nil},
		{"sk_msg missing", noMsg, v2Root, []string{"sk_msg programs: not supported"}, []string{"cgroup v1 only"}},
		{"no privileges", noPerm, v2Root, []string{"needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON", "sockops programs"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(&fakeEngine{kernelErr: tc.engine}, tc.root)
			if (err != nil) != (len(tc.want) > 0) {
				t.Fatalf("checkKernel = %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%v: want %q named", err, w)
				}
			}
			for _, n := range tc.nots {
				if strings.Contains(err.Error(), n) {
					t.Errorf("%v: %q should not be named", err, n)
				}
			}
		})
	}
}

// --mount-bpffs mounts a bpffs where none is, and leaves a mounted one be.
func TestMountBPFFS(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "bpf")
	mounted, err := MountBPFFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	if !mounted || !isBPFFS(dir) {
		t.Fatalf("mounted %v, bpffs %v", mounted, isBPFFS(dir))
	}
	if again, err := MountBPFFS(dir); err != nil || again {
		t.Errorf("second mount = %v, %v; want nothing done", again, err)
	}
}

// fakeEngine is an engine whose kernel check returns kernelErr.
type fakeEngine struct{ kernelErr error }

func (e *fakeEngine) CheckKernel() error { return e.kernelErr }
