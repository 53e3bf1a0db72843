package install

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The binaries nodes run, built as the image builds them (without the
// benchmark's tag, whatever this test was built with), embed one data
// path: the BPF object with the capture code, never the benchmark's build
// without it (bpf/meshbench.go).
func TestBinariesCarryOneDataPath(t *testing.T) {
	dir := binaries(t)
	read := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mesh, nocap := read("../../bpf/mesh_bpfel.o"), read("../../bpf/meshnocap_bpfel.o")
	for _, name := range []string{"mesh-accel", "mesh-accel-installer", "mesh-accelctl"} {
		bin := read(filepath.Join(dir, name))
		if !bytes.Contains(bin, mesh) {
			t.Errorf("%s does not embed bpf/mesh_bpfel.o", name)
		}
		if bytes.Contains(bin, nocap) {
			t.Errorf("%s embeds the benchmark's data path bpf/meshnocap_bpfel.o", name)
		}
	}
}
