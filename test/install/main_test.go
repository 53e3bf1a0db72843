// Package install tests the installer end to end, as root: the real
// mesh-accel-installer binary against a temporary host (CNI bin and config
// folders, a unique bpffs root), with simulated pods (package sim) getting
// their network through the resulting conflist with libcni, as a runtime
// would; and the container image, built with buildah. Without root, BPF or
// buildah the tests skip locally and fail under CI (package testenv).
package install

import (
	"os"
	"testing"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

func TestMain(m *testing.M) {
	sim.RoleMain()
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}
