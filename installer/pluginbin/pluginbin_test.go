package pluginbin

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/installer/internal/installertest"
)

// The plugin binary is copied with mode 0755 through a temporary file and
// a rename: a new binary is a new file (a running plugin keeps the old
// one), an identical one is not rewritten, and no temporary file is left.
func TestInstallBinary(t *testing.T) {
	src := filepath.Join(t.TempDir(), "mesh-accel")
	dir := t.TempDir()
	dst := filepath.Join(dir, Name)
	for i, tc := range []struct {
		content   string
		mode      os.FileMode // of the file already in place, 0: none
		wantWrite bool
	}{
		{"v1", 0, true},
		{"v1", 0, false},
		{"v2", 0, true},
		{"v2", 0o700, true}, // right content, wrong mode
	} {
		if err := os.WriteFile(src, []byte(tc.content), 0o600); err != nil {
			t.Fatal(err)
		}
		if tc.mode != 0 {
			if err := os.Chmod(dst, tc.mode); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := os.Stat(dst)
		wrote, err := Install(src, dir)
		if err != nil || wrote != tc.wantWrite {
			t.Fatalf("step %d: installBinary = %v, %v; want write %v", i, wrote, err, tc.wantWrite)
		}
		after, _ := os.Stat(dst)
		if b, _ := os.ReadFile(dst); string(b) != tc.content || after.Mode().Perm() != 0o755 {
			t.Errorf("step %d: %q mode %v", i, b, after.Mode().Perm())
		}
		if before != nil && os.SameFile(before, after) == tc.wantWrite {
			t.Errorf("step %d: replaced in place or rewritten without need", i)
		}
	}
	if got := installertest.ReadTree(t, dir); len(got) != 1 {
		t.Errorf("files left in the bin dir: %v", got)
	}
	if _, err := Install(filepath.Join(t.TempDir(), "missing"), dir); err == nil {
		t.Error("a missing source binary was not an error")
	}
}

// The plugin's pod records are the .json files of its state's pods/.
func TestPluginRecords(t *testing.T) {
	state := t.TempDir()
	if uids, err := Records(state); err != nil || len(uids) != 0 {
		t.Fatalf("no pods dir: %v, %v", uids, err)
	}
	installertest.WriteTree(t, state, map[string]string{"pods/a.json": "{}", "pods/.tmp-b.json-1": "", "pods/c.json.tmp": "", "lock": ""})
	if uids, err := Records(state); err != nil || strings.Join(uids, ",") != "a" {
		t.Errorf("records %v, %v; want [a]", uids, err)
	}
}

// The plugin's CNI versions are asked as a runtime asks them
// (CNI_COMMAND=VERSION); a plugin that cannot answer is an error.
func TestVersions(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	installertest.WriteTree(t, dir, map[string]string{
		"good": "#!/bin/sh\n[ \"$CNI_COMMAND\" = VERSION ] || exit 1\n" +
			`echo '{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}'` + "\n",
		"bad": "#!/bin/sh\necho 'not JSON'\n",
	})
	for _, f := range []string{"good", "bad"} {
		if err := os.Chmod(filepath.Join(dir, f), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := Versions(good); err != nil || strings.Join(v, ",") != "0.4.0,1.0.0,1.1.0" {
		t.Errorf("Versions = %v, %v", v, err)
	}
	for _, bad := range []string{filepath.Join(dir, "bad"), filepath.Join(dir, "missing")} {
		if v, err := Versions(bad); err == nil {
			t.Errorf("Versions(%s) = %v, want an error", bad, v)
		}
	}
}
