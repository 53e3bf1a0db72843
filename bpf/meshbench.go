//go:build meshbench

package bpf

// The benchmark's knobs. They exist only in builds with -tags meshbench (the
// benchmark, the demo and the tests: see the Makefile), never in the
// binaries that nodes run, which carry one data path.

// meshNoCaptureDataPath is the data path built without the capture code
// (gen.go).
var meshNoCaptureDataPath = &dataPathObject{load: loadMeshnocap, obj: _MeshnocapBytes}

// WithoutCapture returns o loading the data path built without the capture
// code, to measure what an idle capture costs. Its state is never upgraded
// to (Upgrade refuses it) and records its own data path.
func (o Options) WithoutCapture() Options {
	o.dataPath = meshNoCaptureDataPath
	return o
}

// WithOneWay returns cfg allowing the one-way acceleration of a connection
// whose other direction's reader is not trusted (both pods must allow it),
// which the product leaves to the stack.
func (cfg PodConfig) WithOneWay() PodConfig {
	cfg.oneWay = true
	return cfg
}

// OneWay reports whether cfg allows one-way acceleration (WithOneWay).
func (cfg PodConfig) OneWay() bool { return cfg.oneWay }
