// Package nsoptin owns the node's list of namespaces whose pods are
// accelerated without an annotation of their own: the installer watches the
// namespaces labelled [Label]=true through the API server and keeps
// <stateDir>/namespaces.json ([Path]); the CNI plugin reads that file at a
// pod's ADD, so that an ADD never asks the API server about namespaces.
//
// Precedence, as the plugin applies it: a namespace the plugin excludes
// (its excludeNamespaces, kube-system by default) is never accelerated, and
// [Never] is never opted in by its label; then the pod's own annotation
// [Label] decides when the pod has one ("true" accelerates, any other value
// does not); only a pod without it follows its namespace's label.
package nsoptin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/annotations"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Label is the namespace label that opts every pod of the namespace in,
// with the value "true": the name of the pod annotation that opts a pod in
// or out.
const Label = annotations.Enabled

// Never is a namespace the label never opts in: the cluster's own pods.
const Never = "kube-system"

// Path is the file under the plugin's state folder
// ([nodestate.NamespacesPath]).
func Path(stateDir string) string { return nodestate.NamespacesPath(stateDir) }

// File is the content of namespaces.json.
type File struct {
	// Namespaces are the opted-in namespaces, sorted, each once.
	Namespaces []string `json:"namespaces"`
	// Updated is when the installer wrote the file.
	Updated time.Time `json:"updated"`
}

// Set is a set of opted-in namespaces.
type Set map[string]bool

// Read reads the opted-in namespaces of the state folder; none when the
// file does not exist (no installer wrote it yet).
func Read(stateDir string) (Set, error) {
	b, err := os.ReadFile(Path(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return Set{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read opted-in namespaces: %w", err)
	}
	var f File
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("opted-in namespaces %s are corrupt: %w", Path(stateDir), err)
	}
	s := Set{}
	for _, ns := range f.Namespaces {
		if ns != Never {
			s[ns] = true
		}
	}
	return s, nil
}

// Sorted returns the namespaces in order, without [Never].
func (s Set) Sorted() []string {
	out := make([]string, 0, len(s))
	for ns, on := range s {
		if on && ns != Never && ns != "" {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

// Write replaces the file with the namespaces of s atomically (temporary
// file, synced, then renamed; mode 0644: the plugin reads it as root, and
// it holds nothing secret).
func Write(stateDir string, s Set) error {
	b, err := json.MarshalIndent(File{Namespaces: s.Sorted(), Updated: time.Now().UTC()}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode opted-in namespaces: %w", err)
	}
	p := Path(stateDir)
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return fileio.WriteAtomicSync(p, b, 0o644)
}
