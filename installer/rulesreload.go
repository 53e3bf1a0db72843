package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/rules"
)

// rulesMode is the mode of the rules copy and record: the plugin reads
// them as root, and they hold nothing secret.
const rulesMode = 0o644

// ruleSet keeps the node's default rules: the mounted file (a ConfigMap),
// once it parses, is copied to the host for the plugin's ADDs and applied to
// the attached pods that run the previous defaults. A bad file changes
// nothing.
type ruleSet struct {
	src      string // the mounted rules file
	copyPath string // the host copy the plugin reads
	record   string // the last applied rules (StateDir/installer)
	applied  *rules.Set
	text     []byte // applied's text
	log      *slog.Logger
	// sidecarUID is the uid of the built-in defaults.
	sidecarUID uint32
}

// reloadResult says what a reload did.
type reloadResult struct {
	changed        bool // new rules were applied
	updated, owned int  // pods updated; pods left with rules of their own
}

// loadRecord reads the rules applied by an earlier run, so that a restart
// knows which pods run the node defaults.
func (r *ruleSet) loadRecord() {
	data, err := os.ReadFile(r.record)
	if err != nil {
		return
	}
	s, err := rules.ParseString(r.record, string(data))
	if err != nil {
		r.log.Warn("ignoring the record of the applied rules", "err", err)
		return
	}
	r.applied, r.text = s, data
}

// read returns the mounted rules text; the built-in defaults when no file
// is mounted.
func (r *ruleSet) read() ([]byte, error) {
	data, err := os.ReadFile(r.src)
	if errors.Is(err, fs.ErrNotExist) {
		if r.applied != nil {
			return r.text, nil // a ConfigMap being swapped; nothing to change
		}
		r.log.Warn("no rules file mounted: using the built-in defaults", "path", r.src)
		return []byte(rules.DefaultText(r.sidecarUID)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return data, nil
}

// reload parses the mounted rules and, when they are new, writes the host
// copy and the record, then updates the pods running the previous defaults.
// On error the rules in force stay, and so does the host copy.
func (r *ruleSet) reload(n Node) (reloadResult, error) {
	var res reloadResult
	data, err := r.read()
	if err != nil {
		return res, err
	}
	set, err := rules.ParseString(r.src, string(data))
	if err != nil {
		return res, fmt.Errorf("rules file %s is invalid, the rules in force stay: %w", r.src, err)
	}
	if bytes.Equal(data, r.text) && fileio.SameContent(r.copyPath, data) {
		return res, nil
	}
	if err := fileio.WriteAtomicSync(r.copyPath, data, rulesMode); err != nil {
		return res, fmt.Errorf("copy rules for the plugin: %w", err)
	}
	if err := fileio.WriteAtomicSync(r.record, data, rulesMode); err != nil {
		return res, fmt.Errorf("record applied rules: %w", err)
	}
	old := r.applied
	r.applied, r.text = set, data
	if old == nil || old.Equal(set) {
		return res, nil
	}
	res.changed = true
	res.updated, res.owned, err = applyDefaults(n, old, set)
	return res, err
}

// keep makes sure, after a failed reload, that the host copy holds the
// rules in force: the plugin must never find it missing while the entry is
// in place. When none were ever applied, the built-in defaults are.
func (r *ruleSet) keep() error {
	if r.applied == nil {
		text := []byte(rules.DefaultText(r.sidecarUID))
		if err := fileio.WriteAtomicSync(r.record, text, rulesMode); err != nil {
			return fmt.Errorf("record applied rules: %w", err)
		}
		r.applied, r.text = rules.DefaultFor(r.sidecarUID), text
	}
	if fileio.SameContent(r.copyPath, r.text) {
		return nil
	}
	if err := fileio.WriteAtomicSync(r.copyPath, r.text, rulesMode); err != nil {
		return fmt.Errorf("copy rules for the plugin: %w", err)
	}
	return nil
}

// applyDefaults gives every attached pod whose rules are the old defaults
// the new ones (one map update each, keeping the rest of its configuration)
// and counts the pods left alone because their rules differ. The engine
// keeps only a pod's merged rules, so a pod with rules of its own cannot be
// re-merged here; the plugin merges the new defaults at its next ADD. A pod
// whose state is broken (bpf.PodInfo.Broken) is left alone: its
// configuration may be unknown, and the other pods are updated.
func applyDefaults(n Node, old, set *rules.Set) (updated, owned int, err error) {
	pods, err := n.Pods()
	if err != nil {
		return 0, 0, fmt.Errorf("list attached pods: %w", err)
	}
	var errs []error
	for _, p := range pods {
		if p.Broken != nil {
			continue
		}
		if !p.Config.Rules.Equal(old) {
			owned++
			continue
		}
		cfg := p.Config
		cfg.Rules = set
		if err := n.UpdatePod(p.ID, cfg); err != nil && !errors.Is(err, bpf.ErrPodNotAttached) {
			errs = append(errs, fmt.Errorf("update rules of pod %s: %w", p.ID, err))
			continue
		}
		updated++
	}
	return updated, owned, errors.Join(errs...)
}
