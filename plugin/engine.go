package plugin

import (
	"github.com/mesh-accel/mesh-accel/bpf"
)

// engine is what the plugin needs of the mesh-accel engine (package bpf).
type engine interface {
	// nodeExists reports whether complete node state exists, without
	// creating it.
	nodeExists() bool
	// podExists reports whether the pod has state, without opening the node.
	podExists(id string) bool
	// open creates the node state, or reuses it.
	open() (node, error)
	// checkKernel names the kernel features mesh-accel lacks (nil: none).
	checkKernel() error
	// dir is where the node state lives, for messages.
	dir() string
}

// node is an open node state; *bpf.Node implements it.
type node interface {
	AttachPod(id, cgroupDir string, cfg bpf.PodConfig) error
	DetachPod(id string) error
	Pods() ([]bpf.PodInfo, error)
	Close() error
}

// bpfEngine is the real engine at the configured bpffs root.
type bpfEngine struct{ opts bpf.Options }

func (e bpfEngine) dir() string              { return e.opts.Dir() }
func (e bpfEngine) nodeExists() bool         { return bpf.StateExists(e.opts) }
func (e bpfEngine) podExists(id string) bool { return bpf.PodAttached(e.opts, id) }

func (e bpfEngine) open() (node, error) {
	n, err := bpf.OpenNode(e.opts)
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (e bpfEngine) checkKernel() error { return bpf.CheckKernel() }
