package install

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/installer"
)

// wantOriginalOrEntry checks the primary config after the installer was
// killed: valid JSON, and either the original bytes or the original's
// plugins followed by our entry.
func (h *hostNode) wantOriginalOrEntry(when string) {
	h.t.Helper()
	got := readFile(h.t, h.conflist)
	if got == h.original {
		return
	}
	var cur, orig struct {
		Plugins []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(got), &cur); err != nil {
		h.t.Fatalf("%s: the primary config is not valid JSON (%v):\n%s", when, err, got)
	}
	if err := json.Unmarshal([]byte(h.original), &orig); err != nil {
		h.t.Fatal(err)
	}
	l := h.runtimeList()
	if len(cur.Plugins) != len(orig.Plugins)+1 || l.Plugins[len(l.Plugins)-1].Network.Type != installer.PluginType {
		h.t.Fatalf("%s: the primary config is neither the original nor the original plus our entry:\n%s", when, got)
	}
	for i := range orig.Plugins {
		if !jsonEqual(orig.Plugins[i], cur.Plugins[i]) {
			h.t.Fatalf("%s: plugin %d changed:\n%s", when, i, got)
		}
	}
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// The installer SIGKILLed at random moments of its install, its repair of
// the entry and its uninstall: the primary config is always valid, the
// original bytes or the original plus the entry, and a restarted
// installer repairs it (then its SIGTERM gives back the original bytes).
func TestInstallerKilledAnywhere(t *testing.T) {
	iterations := 100
	if testing.Short() {
		iterations = 20
	}
	h := newHostNode(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < iterations; i++ {
		inst := startInstaller(t, h.bin, h.flags(false))
		switch i % 3 {
		case 0: // during install
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		case 1: // during a repair: the primary CNI rewrites its config
			inst.waitReady(t)
			writeFile(t, h.conflist, h.original, 0o644)
			time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		case 2: // during the uninstall
			inst.waitReady(t)
			if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		_ = inst.cmd.Process.Signal(syscall.SIGKILL)
		<-inst.done
		h.wantOriginalOrEntry("after SIGKILL " + []string{"during install", "during repair", "during uninstall"}[i%3])
	}
	again := startInstaller(t, h.bin, h.flags(true))
	again.waitReady(t)
	h.wantInstalled()
	again.terminate(t)
	h.wantUninstalled()
	if _, err := os.Stat(h.conflist); err != nil {
		t.Fatal(err)
	}
}
