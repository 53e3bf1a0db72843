package ctl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// Engine is the node's mesh-accel state as the commands use it. *bpf.Node
// provides all of it but StartCapture's interface result and Objects (see
// [OpenEngine]); tests use fakes.
type Engine interface {
	Dir() string
	Enabled() (bool, error)
	SetEnabled(on bool) error
	Pods() ([]bpf.PodInfo, error)
	UpdatePod(id string, cfg bpf.PodConfig) error
	SetPodEnabled(id string, on bool) error
	Drain(podCgroup uint64) (int, error)
	Counters() (bpf.Counters, error)
	Directions() ([]bpf.Direction, error)
	Usage() (bpf.Usage, error)
	// DataPaths says which data path the pinned programs are, and which
	// this binary carries.
	DataPaths() (bpf.DataPaths, error)
	// Objects lists the pinned programs and maps of the node state.
	Objects() ([]Object, error)
	StartCapture(f bpf.CaptureFilter) (Capture, error)
	Close() error
}

// Capture is a running capture of redirected messages (*bpf.Capture).
// Read returns an error wrapping os.ErrDeadlineExceeded once the deadline
// has passed and nothing is buffered. SetDeadline must not be called while
// a Read blocks (bpf.Capture would wait for it), and Close only once.
type Capture interface {
	Read() (bpf.CaptureEvent, error)
	SetDeadline(t time.Time)
	Close() error
}

// Object is a pinned BPF program or map of the node state.
type Object struct {
	Kind       string `json:"kind"` // "program" or "map"
	Name       string `json:"name"` // pin name
	ID         uint32 `json:"id"`
	Type       string `json:"type"`
	MaxEntries uint32 `json:"max_entries,omitempty"`
}

// ErrNoState is returned when the node has no mesh-accel state to work on.
var ErrNoState = errors.New("no mesh-accel state on this node")

// StateDir is where the node state of cfg lives.
func StateDir(cfg Config) string { return stateOptions(cfg).Dir() }

// stateOptions locate the node state of cfg: its folder is named by the
// layout and the maps' size.
func stateOptions(cfg Config) bpf.Options {
	return bpf.Options{BPFFS: cfg.BPFFS, Root: cfg.BPFRoot, MapSize: cfg.MapSize}
}

// OpenEngine opens the node state that the CNI plugin or installer created.
// Unlike bpf.OpenNode it never creates state: a node without any is
// reported as ErrNoState.
func OpenEngine(cfg Config) (Engine, error) {
	opts := stateOptions(cfg)
	if !bpf.StateExists(opts) {
		if _, err := os.Stat(opts.Dir()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, needsRoot(fmt.Errorf("open node state: %w", err))
		}
		return nil, fmt.Errorf("%w at %s: mesh-accel has not set this node up, or --%s/--%s/--%s point elsewhere",
			ErrNoState, opts.Dir(), FlagBPFFS, FlagBPFRoot, FlagMapSize)
	}
	n, err := bpf.OpenNode(opts)
	if err != nil {
		return nil, needsRoot(fmt.Errorf("open node state at %s: %w", opts.Dir(), err))
	}
	return nodeEngine{n}, nil
}

// nodeEngine adapts *bpf.Node to Engine.
type nodeEngine struct{ *bpf.Node }

func (e nodeEngine) StartCapture(f bpf.CaptureFilter) (Capture, error) {
	c, err := e.Node.StartCapture(f)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (e nodeEngine) Objects() ([]Object, error) { return pinnedObjects(e.Dir()) }

// pinnedObjects describes the programs pinned under dir/progs and the maps
// under dir/maps, each sorted by name.
func pinnedObjects(dir string) ([]Object, error) {
	var out []Object
	for _, kind := range []string{"program", "map"} {
		sub := map[string]string{"program": "progs", "map": "maps"}[kind]
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return nil, fmt.Errorf("list pinned %ss: %w", kind, err)
		}
		for _, ent := range ents {
			o, err := pinnedObject(kind, filepath.Join(dir, sub, ent.Name()))
			if err != nil {
				return nil, err
			}
			out = append(out, o)
		}
	}
	return out, nil
}

func pinnedObject(kind, path string) (Object, error) {
	o := Object{Kind: kind, Name: filepath.Base(path)}
	if kind == "program" {
		p, err := ebpf.LoadPinnedProgram(path, nil) // the kernel refuses read-only program pins
		if err != nil {
			return o, fmt.Errorf("load pinned program %s: %w", path, err)
		}
		defer p.Close()
		info, err := p.Info()
		if err != nil {
			return o, fmt.Errorf("program info of %s: %w", path, err)
		}
		id, _ := info.ID()
		o.ID, o.Type = uint32(id), info.Type.String()
		return o, nil
	}
	m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return o, fmt.Errorf("load pinned map %s: %w", path, err)
	}
	defer m.Close()
	info, err := m.Info()
	if err != nil {
		return o, fmt.Errorf("map info of %s: %w", path, err)
	}
	id, _ := info.ID()
	o.ID, o.Type, o.MaxEntries = uint32(id), info.Type.String(), info.MaxEntries
	return o, nil
}
