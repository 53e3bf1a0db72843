package ctl

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// PodDirectory names pods. The engine knows a pod by its id (the Kubernetes
// pod UID, also its pin directory name); people know it as namespace/name.
type PodDirectory interface {
	// Resolve returns the engine pod ids that ref may name: ref is
	// "namespace/name" or a pod UID (returned as is). Several ids come back
	// when stale records share a name; none when a name is unknown.
	Resolve(ref string) []string
	// Name returns the display name of a pod id: "namespace/name" when
	// known, else the id itself.
	Name(id string) string
}

// PodRecord is the metadata the CNI plugin records per pod, as the file
// <pod dir>/<uid>.json.
type PodRecord struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// FileDirectory is a PodDirectory reading the records in a directory. It
// reads them once, at first use. A missing directory, or a missing or
// unreadable record, leaves those pods known by their UID only.
type FileDirectory struct {
	dir  string
	once sync.Once
	byID map[string]PodRecord
}

// NewFileDirectory returns the directory of the records in dir.
func NewFileDirectory(dir string) *FileDirectory { return &FileDirectory{dir: dir} }

func (d *FileDirectory) load() {
	d.byID = map[string]PodRecord{}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return
	}
	for _, ent := range ents {
		id, ok := strings.CutSuffix(ent.Name(), ".json")
		if !ok || ent.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.dir, ent.Name()))
		if err != nil {
			continue
		}
		var r PodRecord
		if json.Unmarshal(b, &r) != nil || r.Namespace == "" || r.Name == "" {
			continue
		}
		d.byID[id] = r
	}
}

// Resolve implements PodDirectory.
func (d *FileDirectory) Resolve(ref string) []string {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return []string{ref}
	}
	d.once.Do(d.load)
	var ids []string
	for id, r := range d.byID {
		if r.Namespace == ns && r.Name == name {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Name implements PodDirectory.
func (d *FileDirectory) Name(id string) string {
	d.once.Do(d.load)
	if r, ok := d.byID[id]; ok {
		return r.Namespace + "/" + r.Name
	}
	return id
}
