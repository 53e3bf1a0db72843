package installer

import (
	"fmt"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer/pluginbin"
)

// Engine is what the installer needs of package bpf.
type Engine interface {
	// CheckKernel names the kernel features mesh-accel lacks (nil: none).
	CheckKernel() error
	// OpenNode creates the node state, or reuses it.
	OpenNode(bpf.Options) (Node, error)
	// StateExists reports whether complete node state exists, without
	// opening it.
	StateExists(bpf.Options) bool
}

// Node is an open node state; *bpf.Node implements it.
type Node interface {
	Dir() string
	Pods() ([]bpf.PodInfo, error)
	UpdatePod(id string, cfg bpf.PodConfig) error
	Counters() (bpf.Counters, error)
	// SweepStep runs one bounded pass of the sweep, which removes map
	// entries of sockets that closed unseen (bpf.Node.SweepStep).
	SweepStep() (bpf.Swept, error)
	// DataPaths says which data path is pinned and which the installer
	// carries.
	DataPaths() (bpf.DataPaths, error)
	// Upgrade brings the node to the installer's data path: programs
	// replaced in place, pods of an older layout moved, older states
	// removed once no connection is left in them.
	Upgrade() (bpf.UpgradeReport, error)
	Remove() error
	Close() error
}

// BPFEngine is the real engine.
type BPFEngine struct{}

// CheckKernel implements [Engine].
func (BPFEngine) CheckKernel() error { return bpf.CheckKernel() }

// OpenNode implements [Engine].
func (BPFEngine) OpenNode(o bpf.Options) (Node, error) {
	n, err := bpf.OpenNode(o)
	if err != nil {
		return nil, err
	}
	// o.BacklogLimit applies when the state is created: reused state gets
	// the configured bound here.
	if err := n.SetBacklogLimit(o.BacklogLimit); err != nil {
		_ = n.Close()
		return nil, fmt.Errorf("set the flow-control bound to %d bytes: %w", o.BacklogLimit, err)
	}
	return n, nil
}

// StateExists implements [Engine].
func (BPFEngine) StateExists(o bpf.Options) bool { return bpf.StateExists(o) }

// PluginVersions asks the plugin binary which CNI versions it speaks, as a
// runtime does ([pluginbin.Versions]).
func PluginVersions(binary string) ([]string, error) { return pluginbin.Versions(binary) }
