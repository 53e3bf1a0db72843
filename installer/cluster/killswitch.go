package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// KillSwitchKey is the key of the rules ConfigMap (mesh-accel-rules) that
// turns acceleration off on every node: "false" turns each node's global
// switch off, "true" or no key turns it on again where the ConfigMap turned
// it off. It is mounted as a file next to the rules file.
const KillSwitchKey = "enabled"

// SwitchNode is the node state's global switch; *bpf.Node has it.
type SwitchNode interface {
	Enabled() (bool, error)
	SetEnabled(on bool) error
}

// KillSwitch makes the node's global switch follow the ConfigMap's
// KillSwitchKey, as `mesh-accelctl disable` and `enable` set it: off, no
// new connection is accelerated, and the connections accelerated already
// stay so until they close (`mesh-accelctl disable --drain` on the node
// moves them back at once).
//
// Whoever turned the switch off decides when it goes on again: the marker
// file records that the ConfigMap did. A switch an operator turned off by
// hand stays off when the ConfigMap says "true" again (`mesh-accelctl
// disable` removes the marker, also while the ConfigMap holds the switch
// off). While the ConfigMap says "false" the switch is kept off: turned
// off again at every re-check (also after a reboot, whose new node state
// starts on), even after a `mesh-accelctl enable` on the node.
type KillSwitch struct {
	path   string // the mounted key
	marker string // exists while the ConfigMap holds the switch off
	log    *slog.Logger
	state  string // the last situation logged, so that each is logged once
}

// NewKillSwitch returns the switch that follows the key mounted next to
// rulesFile, with its marker in stateDir.
func NewKillSwitch(rulesFile, stateDir string, log *slog.Logger) *KillSwitch {
	return &KillSwitch{
		path:   filepath.Join(filepath.Dir(rulesFile), KillSwitchKey),
		marker: nodestate.SwitchOffByConfigMapPath(stateDir),
		log:    log,
	}
}

// wanted reads the key: true when absent.
func (k *KillSwitch) wanted() (bool, error) {
	b, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the ConfigMap key %s: %w", KillSwitchKey, err)
	}
	v := strings.TrimSpace(string(b))
	on, err := strconv.ParseBool(v)
	if err != nil {
		return false, &SwitchValueError{path: k.path, value: v}
	}
	return on, nil
}

// SwitchValueError is a value of the key that is not a boolean; the
// installer's metric mesh_accel_switch_key_invalid says so.
type SwitchValueError struct{ path, value string }

func (e *SwitchValueError) Error() string {
	return fmt.Sprintf("ConfigMap key %s (%s) is %q, neither \"true\" nor \"false\": the node's switch stays as it is",
		KillSwitchKey, e.path, e.value)
}

// Apply sets the node's switch as the key says. A node without a switch
// (not a [SwitchNode]) can only be left on.
func (k *KillSwitch) Apply(n any) error {
	want, err := k.wanted()
	if err != nil {
		return err
	}
	sn, ok := n.(SwitchNode)
	if !ok {
		if want {
			return nil // nothing to turn off
		}
		return errors.New("the node state has no global switch")
	}
	on, err := sn.Enabled()
	if err != nil {
		return fmt.Errorf("read the node's switch: %w", err)
	}
	_, serr := os.Stat(k.marker)
	marked := serr == nil
	switch {
	case !want && on:
		// The marker first: a crash before the switch is set must not
		// leave a switch off that looks turned off by hand.
		if err := fileio.WriteAtomicSync(k.marker, []byte("the ConfigMap key "+KillSwitchKey+" turned the switch off\n"), 0o644); err != nil {
			return fmt.Errorf("record who turns the switch off: %w", err)
		}
		if err := sn.SetEnabled(false); err != nil {
			return fmt.Errorf("turn the node's switch off: %w", err)
		}
		if marked {
			k.logOnce("reoff", slog.LevelWarn, "acceleration turned off again: the ConfigMap says "+KillSwitchKey+": false")
		} else {
			k.logOnce("off", slog.LevelWarn, "acceleration turned off on this node: the ConfigMap says "+KillSwitchKey+
				": false; connections accelerated now stay so until they close")
		}
	case !want && !marked:
		k.logOnce("off-by-hand", slog.LevelInfo, "the ConfigMap says "+KillSwitchKey+": false; the switch was already "+
			"off by hand, and stays off when the ConfigMap says true again (mesh-accelctl enable turns it on)")
	case !want:
		k.logOnce("off", slog.LevelInfo, "acceleration off on this node: the ConfigMap says "+KillSwitchKey+": false")
	case marked:
		if !on {
			if err := sn.SetEnabled(true); err != nil {
				return fmt.Errorf("turn the node's switch on: %w", err)
			}
		}
		if err := fileio.Remove(k.marker); err != nil {
			return err
		}
		k.logOnce("on", slog.LevelInfo, "acceleration turned on again: the ConfigMap no longer says "+KillSwitchKey+": false")
	case !on:
		k.logOnce("on-off-by-hand", slog.LevelInfo, "the node's switch is off by hand (mesh-accelctl disable): "+
			"the ConfigMap leaves it off")
	default:
		k.state = "on"
	}
	return nil
}

// logOnce logs msg when the situation changed since the last one logged.
func (k *KillSwitch) logOnce(state string, level slog.Level, msg string) {
	if k.state == state {
		return
	}
	k.state = state
	k.log.Log(context.Background(), level, msg, "key", k.path)
}
