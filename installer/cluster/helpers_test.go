package cluster

import "github.com/mesh-accel/mesh-accel/installer/internal/installertest"

// The helpers shared with the installer's other packages.
var (
	writeTree      = installertest.WriteTree
	fileMode       = installertest.FileMode
	replaceWith    = installertest.ReplaceWith
	testLog        = installertest.Log
	fakeAPI        = installertest.FakeAPI
	namespace      = installertest.Namespace
	optedIn        = installertest.OptedIn
	toUnstructured = installertest.ToUnstructured
	waitFor        = installertest.WaitFor
)
