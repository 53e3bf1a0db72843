package ctltest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
)

// buildCtl builds mesh-accelctl into a folder that every user may read,
// removed at the end of the test.
func buildCtl(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mesh-accelctl-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cnichain.GoTool(), "build", "-trimpath", "-o", dir+"/", "github.com/mesh-accel/mesh-accel/ctl/cmd/mesh-accelctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build mesh-accelctl: %v\n%s", err, out)
	}
	return filepath.Join(dir, "mesh-accelctl")
}

// mesh-accelctl run as an unprivileged user on a node with mesh-accel
// state says that it needs root and how to run it: never that the kernel
// lacks what mesh-accel needs, nor that the node has no state. It changes
// nothing.
func TestWithoutRoot(t *testing.T) {
	e := newEnv(t)
	e.pod("a", oneWayCfg)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testenv.Missing(t, "setpriv (util-linux), to run mesh-accelctl as nobody")
	}
	bin := buildCtl(t)
	for _, args := range [][]string{{"status"}, {"conns"}, {"rules", "show", "-n", ns, "a"}, {"stats"}, {"disable"},
		{"dump", "-c", "1"}} {
		cmd := exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", bin},
			append(append([]string{}, e.global...), args...)...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != ctl.ExitError {
			t.Errorf("%q as nobody: %v, want exit %d\n%s%s", args, err, ctl.ExitError, out.String(), errb.String())
		}
		msg := out.String() + errb.String()
		for _, want := range []string{"mesh-accelctl needs root (CAP_BPF, CAP_NET_ADMIN",
			"run it with sudo, or in the installer pod"} {
			if !strings.Contains(errb.String(), want) {
				t.Errorf("%q as nobody: stderr lacks %q:\n%s", args, want, errb.String())
			}
		}
		for _, wrong := range []string{"kernel lacks", "NOT READY", "no mesh-accel state", "strconv"} {
			if strings.Contains(msg, wrong) {
				t.Errorf("%q as nobody blames something else (%q):\n%s", args, wrong, msg)
			}
		}
		if args[0] == "status" && (!strings.Contains(out.String(), "NOT CHECKED: the BPF probes were refused") ||
			!strings.Contains(out.String(), "Node state:  unknown: "+e.node.Dir()+" is not readable without root")) {
			t.Errorf("status as nobody:\n%s", out.String())
		}
	}
	if on, err := e.node.Enabled(); err != nil || !on {
		t.Errorf("the global switch after disable as nobody: %v, %v", on, err)
	}
	// The same binary as root works: the failures above are the user's.
	if out, err := exec.Command(bin, append(append([]string{}, e.global...), "rules", "show", "-n", ns, "a")...).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "shop/a") {
		t.Errorf("mesh-accelctl as root: %v\n%s", err, out)
	}
}
