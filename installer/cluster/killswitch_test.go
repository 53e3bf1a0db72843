package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// killSwitchEnv is a node state and the mounted ConfigMap folder.
type killSwitchEnv struct {
	t    *testing.T
	node *bpf.Node
	k    *KillSwitch
	// stateDir is the state folder of the switch's marker.
	stateDir string
}

func newKillSwitchEnv(t *testing.T) *killSwitchEnv {
	t.Helper()
	root := t.TempDir()
	rulesFile, stateDir := filepath.Join(root, "rules", "rules"), filepath.Join(root, "state")
	for _, d := range []string{filepath.Dir(rulesFile), nodestate.InstallerDir(stateDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &killSwitchEnv{t: t, node: bpftest.NewNode(t, bpf.Options{}), k: NewKillSwitch(rulesFile, stateDir, testLog(t)), stateDir: stateDir}
}

// set writes the ConfigMap key; "" removes it.
func (e *killSwitchEnv) set(v string) {
	e.t.Helper()
	if v == "" {
		if err := os.Remove(e.k.path); err != nil && !os.IsNotExist(err) {
			e.t.Fatal(err)
		}
		return
	}
	replaceWith(e.t, e.k.path, v+"\n")
}

// expect applies the key and checks the node's switch.
func (e *killSwitchEnv) expect(step string, want bool) {
	e.t.Helper()
	if err := e.k.Apply(e.node); err != nil {
		e.t.Fatalf("%s: apply: %v", step, err)
	}
	if on, err := e.node.Enabled(); err != nil || on != want {
		e.t.Fatalf("%s: switch on = %v (%v), want %v", step, on, err, want)
	}
}

// byHand sets the switch as mesh-accelctl does.
func (e *killSwitchEnv) byHand(on bool) {
	e.t.Helper()
	if err := e.node.SetEnabled(on); err != nil {
		e.t.Fatal(err)
	}
}

func TestKillSwitchFollowsConfigMap(t *testing.T) {
	e := newKillSwitchEnv(t)
	e.expect("no key", true)
	e.set("true")
	e.expect("true", true)
	e.set("false")
	e.expect("false", false)
	// mesh-accelctl enable while the ConfigMap says false, or a new node
	// state after a reboot (it starts on): turned off again.
	e.byHand(true)
	e.expect("false kept", false)
	e.set("true")
	e.expect("true again", true)
	e.set("false")
	e.expect("false again", false)
	e.set("")
	e.expect("key removed", true)
}

// TestKillSwitchRespectsManualDisable: a switch turned off by hand stays
// off whatever the ConfigMap says.
func TestKillSwitchRespectsManualDisable(t *testing.T) {
	e := newKillSwitchEnv(t)
	e.expect("no key", true)
	e.byHand(false) // mesh-accelctl disable
	e.expect("off by hand, no key", false)
	e.set("false")
	e.expect("ConfigMap false", false)
	e.set("true")
	e.expect("ConfigMap true: still off by hand", false)
	e.byHand(true)
	e.expect("on by hand", true)
}

// ctl runs mesh-accelctl on the node's state, as an operator does.
func (e *killSwitchEnv) ctl(args ...string) {
	e.t.Helper()
	root := filepath.Dir(e.node.Dir()) // <bpffs>/<root>/<layout>
	global := []string{"--" + ctl.FlagBPFFS, filepath.Dir(root), "--" + ctl.FlagBPFRoot, filepath.Base(root),
		"--" + ctl.FlagStateDir, e.stateDir}
	var out bytes.Buffer
	if code := ctl.Main(context.Background(), append(global, args...), ctl.Deps{Stdout: &out, Stderr: &out,
		Getenv: func(string) string { return "" }}); code != ctl.ExitOK {
		e.t.Fatalf("mesh-accelctl %s: exit %d: %s", strings.Join(args, " "), code, out.String())
	}
}

// TestKillSwitchKeepsDisableWhileOff: mesh-accelctl disable while the
// ConfigMap holds the switch off is a switch-off by hand too: "true" again
// leaves it off, until mesh-accelctl enable.
func TestKillSwitchKeepsDisableWhileOff(t *testing.T) {
	e := newKillSwitchEnv(t)
	e.set("false")
	e.expect("ConfigMap false", false)
	e.ctl("disable")
	e.expect("off by hand too", false)
	e.set("true")
	e.expect("ConfigMap true: still off by hand", false)
	e.ctl("enable")
	e.expect("on by hand", true)
}

func TestKillSwitchBadValue(t *testing.T) {
	e := newKillSwitchEnv(t)
	e.set("nope")
	if err := e.k.Apply(e.node); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("apply = %v, want an error naming the value", err)
	}
	if on, _ := e.node.Enabled(); !on {
		t.Error("a bad value changed the switch")
	}
}
