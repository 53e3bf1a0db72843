package ctl

import (
	"sort"
	"strings"
	"sync"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
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

// PodRecord is what mesh-accelctl shows of a pod: its name and UID.
type PodRecord struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// FileDirectory is a PodDirectory reading the CNI plugin's records in its
// state folder (package nodestate owns their format). It reads them once,
// at first use. A missing folder, or a missing or unreadable record, leaves
// those pods known by their UID only.
type FileDirectory struct {
	stateDir string
	once     sync.Once
	byID     map[string]PodRecord
}

// NewFileDirectory returns the directory of the records in the plugin's
// state folder stateDir.
func NewFileDirectory(stateDir string) *FileDirectory { return &FileDirectory{stateDir: stateDir} }

func (d *FileDirectory) load() {
	d.byID = map[string]PodRecord{}
	recs, _ := nodestate.ListRecords(d.stateDir) // unreadable records: known by UID only
	for _, r := range recs {
		if r.Namespace != "" && r.Name != "" {
			d.byID[r.PodUID] = PodRecord{Namespace: r.Namespace, Name: r.Name, UID: r.PodUID}
		}
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

// Records returns the pods the records name, sorted by namespace and name
// (shell completion offers them).
func (d *FileDirectory) Records() []PodRecord {
	d.once.Do(d.load)
	out := make([]PodRecord, 0, len(d.byID))
	for _, r := range d.byID {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].UID < out[j].UID
	})
	return out
}
