package bpf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
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
	t.Cleanup(func() { _ = os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, root)) })
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

func TestCheckRelease(t *testing.T) {
	for _, tc := range []struct {
		release string
		ok      bool
	}{
		{"6.1.0-57-cloud-amd64", true},
		{"6.12.117+deb12-cloud-amd64", true},
		{"6.18.44-fc-v857", true},
		{"7.0.1", true},
		{"5.15.0-91-generic", false},
		{"6.0.19", false},
		{"4.19.0", false},
		{"garbage", false},
	} {
		err := checkRelease(tc.release, [2]int{6, 1})
		if (err == nil) != tc.ok {
			t.Errorf("checkRelease(%q) = %v, want ok %v", tc.release, err, tc.ok)
		}
	}
	if err := checkRelease("5.15.0-91-generic", [2]int{6, 1}); err == nil || err.Error() !=
		"kernel 5.15.0-91-generic is older than 6.1, the oldest kernel mesh-accel is tested on" {
		t.Errorf("message: %v", err)
	}
}
