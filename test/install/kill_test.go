package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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

// SIGTERM at random moments of the installer's start, half the time on a
// node where a predecessor was SIGKILLed with our entry in place: the
// uninstall gives the original bytes back. The installer catches SIGTERM
// from its package earlysignal's init on, about 2 ms after exec; a SIGTERM
// before that kills it as it kills any program without a handler yet, and
// then the config must still be valid and a successor must clean up. A
// SIGTERM that kills the installer after it has written its first log line
// (main runs after every init, earlysignal's included) fails the test: the
// handler was missing. No wall-clock limit: a busy machine only moves the
// moment.
func TestInstallerTerminatedAnywhere(t *testing.T) {
	iterations := 30
	if testing.Short() {
		iterations = 10
	}
	h := newHostNode(t)
	rng := rand.New(rand.NewPCG(3, 4))
	early, latest := 0, time.Duration(0)
	for i := 0; i < iterations; i++ {
		if i%2 == 0 { // a predecessor killed while installed
			pred := startInstaller(t, h.bin, h.flags(false))
			pred.waitReady(t)
			_ = pred.cmd.Process.Signal(syscall.SIGKILL)
			<-pred.done
		}
		inst := startInstaller(t, h.bin, h.flags(false))
		delay := time.Duration(rng.IntN(60_000)) * time.Microsecond
		if i < 3 {
			delay = 0 // as early as a signal can come
		}
		time.Sleep(delay)
		logged := inst.out.String() // what main had written (and we had read) before the signal
		if err := inst.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		var err error
		select {
		case err = <-inst.done:
		case <-time.After(time.Minute):
			t.Fatalf("installer did not exit within a minute of SIGTERM (%v after start):\n%s", delay, inst.out.String())
		}
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.Sys().(syscall.WaitStatus).Signaled() {
			early, latest = early+1, max(latest, delay)
			if logged != "" {
				t.Errorf("SIGTERM %v after start killed the installer after it had logged (its handler was missing):\n%s", delay, logged)
			}
			h.wantOriginalOrEntry(fmt.Sprintf("SIGTERM %v after start, before the handler", delay))
			successor := startInstaller(t, h.bin, h.flags(false))
			successor.waitReady(t)
			successor.terminate(t)
			h.wantUninstalled()
			continue
		}
		if err != nil {
			t.Fatalf("installer exited with %v after SIGTERM %v after start:\n%s", err, delay, inst.out.String())
		}
		if got := readFile(t, h.conflist); got != h.original {
			t.Fatalf("SIGTERM %v after start (predecessor killed: %v): the config is not the original:\n%s\ninstaller log:\n%s",
				delay, i%2 == 0, got, inst.out.String())
		}
		h.wantUninstalled()
	}
	t.Logf("%d of %d SIGTERMs came before the handler, the latest %v after the start", early, iterations, latest)
}
