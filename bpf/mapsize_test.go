package bpf

import "testing"

// DefaultMapSize, a Go constant, is the size the C declares for every
// connection map: the size a node gets when Options.MapSize is zero.
func TestDefaultMapSize(t *testing.T) {
	spec, err := loadMesh()
	if err != nil {
		t.Fatal(err)
	}
	var maps meshMapSpecs
	if err := spec.Assign(&maps); err != nil {
		t.Fatal(err)
	}
	for _, m := range connectionMaps(&maps) {
		if m.MaxEntries != DefaultMapSize {
			t.Errorf("%s: max_entries %d in c/mesh_accel.c, DefaultMapSize %d", m.Name, m.MaxEntries, DefaultMapSize)
		}
	}
}
