// Package runtime runs the installer's image under a real OCI runtime, as
// a node runs the DaemonSet: the image that `make image` builds, run by
// runc with the installer container's command, environment, security
// context, mounts and resources rendered from the Helm chart, turned into
// an OCI runtime spec the way containerd's CRI plugin turns them (with
// containerd's own spec package, pkg/oci), and with the seccomp profile
// containerd generates for that capability set under seccompProfile
// RuntimeDefault: the current containerd's (go.mod), which allows bpf()
// with CAP_BPF, and v1.6.8's, which does not (testdata, written by
// seccompgen).
//
// The host side is a temporary node: CNI folders with a primary conflist,
// the installer's host folders and a unique bpffs root, the host's bpffs
// and cgroup hierarchy. Pods get their network through whatever the CNI
// config folder holds, through libcni (package cnichain), as a runtime
// would. Without root, runc, buildah or BPF the tests skip locally and fail
// under CI (package testenv).
package runtime

import (
	"os"
	"testing"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

func TestMain(m *testing.M) {
	sim.RoleMain()
	sweepStale()
	sweepStaleNodeState()
	created := map[string]bool{}
	for _, p := range buildahMachineDirs {
		if _, err := os.Lstat(p); err != nil {
			created[p] = true
		}
	}
	code := m.Run()
	if built.img != nil {
		built.img.remove()
	}
	for p := range created {
		os.RemoveAll(p)
	}
	_ = os.Remove(runcRoots) // when no other run uses it

	os.Exit(code)
}
