// Package cni tests the mesh-accel CNI plugin end to end: simulated pods
// (package sim) get their network from a real CNI chain (loopback, bridge
// and host-local of containernetworking/plugins, then mesh-accel) driven
// with libcni as a runtime drives it, and their traffic through the
// sidecars is checked against the engine's counters and pairs.
package cni

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
