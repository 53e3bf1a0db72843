package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// The recorded build information gives the version when the build set none.
func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0"},
		{"revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}, "abc123"},
		{"dirty", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}}, "abc123-dirty"},
		{"nothing", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	} {
		if got := fromBuildInfo(&tc.info); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// -X .../internal/version.version sets what all three binaries print: the
// installer's --version, mesh-accelctl version, the plugin's about text.
func TestLdflagsReachBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three binaries")
	}
	dir := t.TempDir()
	const v = "v9.8.7-test"
	cmd := exec.Command("go", "build", "-o", dir+"/", "-ldflags", "-X github.com/mesh-accel/mesh-accel/internal/version.version="+v,
		"github.com/mesh-accel/mesh-accel/installer/cmd/mesh-accel-installer",
		"github.com/mesh-accel/mesh-accel/ctl/cmd/mesh-accelctl",
		"github.com/mesh-accel/mesh-accel/plugin/cmd/mesh-accel")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, run := range [][]string{{"mesh-accel-installer", "--version"}, {"mesh-accelctl", "version"}, {"mesh-accel"}} {
		c := exec.Command(filepath.Join(dir, run[0]), run[1:]...)
		c.Env = []string{"PATH=/usr/bin:/bin"} // no CNI_COMMAND: the plugin prints its about text
		out, _ := c.CombinedOutput()
		if !strings.Contains(string(out), v) {
			t.Errorf("%s: %q lacks %s", strings.Join(run, " "), out, v)
		}
	}
}
