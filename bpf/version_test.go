package bpf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// Node state records the data path that created it; a binary of another
// build opening it sees the skew.
func TestDataPathsRecorded(t *testing.T) {
	testenv.RequireRoot(t)
	if err := CheckKernel(); err != nil {
		testenv.Missing(t, "%v", err)
	}
	root := "mesh-accel-test-version-" + filepath.Base(t.TempDir())
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(DefaultBPFFS, root)) })
	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	dp, err := n.DataPaths()
	if err != nil || dp.Skewed() || dp.Binary != DataPath() || len(dp.Pinned) != 16 {
		t.Fatalf("fresh state: %+v, %v; want this binary's %s", dp, err, DataPath())
	}
	// As if an older build had created the state.
	if err := n.updateGlobal(func(c *meshGlobalConfig) { c.Build ^= 1 }); err != nil {
		t.Fatal(err)
	}
	if dp, err = n.DataPaths(); err != nil || !dp.Skewed() {
		t.Fatalf("state of another build: %+v, %v; want skewed", dp, err)
	}
}
