package cluster

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

// RuleSet keeps the node's default rules: the mounted file (a ConfigMap),
// once it parses, is copied to the host for the plugin's ADDs and applied to
// the attached pods that run the previous defaults. A bad file changes
// nothing.
type RuleSet struct {
	Src      string // the mounted rules file
	CopyPath string // the host copy the plugin reads
	Record   string // the last applied rules (nodestate.RulesAppliedPath)
	Log      *slog.Logger
	// SidecarUID is the uid of the built-in defaults.
	SidecarUID uint32

	applied *rules.Set
	text    []byte // applied's text
}

// Applied returns the rules in force; nil before the first reload.
func (r *RuleSet) Applied() *rules.Set { return r.applied }

// RulesNode is what the rules need of the node state: its pods, and
// updating one (the installer's Node, *bpf.Node).
type RulesNode interface {
	Pods() ([]bpf.PodInfo, error)
	UpdatePod(id string, cfg bpf.PodConfig) error
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	Changed        bool // new rules were applied
	Updated, Owned int  // pods updated; pods left with rules of their own
}

// LoadRecord reads the rules applied by an earlier run, so that a restart
// knows which pods run the node defaults.
func (r *RuleSet) LoadRecord() {
	data, err := os.ReadFile(r.Record)
	if err != nil {
		return
	}
	s, err := rules.ParseString(r.Record, string(data))
	if err != nil {
		r.Log.Warn("ignoring the record of the applied rules", "err", err)
		return
	}
	r.applied, r.text = s, data
}

// read returns the mounted rules text; the built-in defaults when no file
// is mounted.
func (r *RuleSet) read() ([]byte, error) {
	data, err := os.ReadFile(r.Src)
	if errors.Is(err, fs.ErrNotExist) {
		if r.applied != nil {
			return r.text, nil // a ConfigMap being swapped; nothing to change
		}
		r.Log.Warn("no rules file mounted: using the built-in defaults", "path", r.Src)
		return []byte(rules.DefaultText(r.SidecarUID)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return data, nil
}

// Reload parses the mounted rules and, when they are new, writes the host
// copy and the record, then updates the pods running the previous defaults.
// On error the rules in force stay, and so does the host copy.
func (r *RuleSet) Reload(n RulesNode) (ReloadResult, error) {
	var res ReloadResult
	data, err := r.read()
	if err != nil {
		return res, err
	}
	set, err := rules.ParseString(r.Src, string(data))
	if err != nil {
		return res, fmt.Errorf("rules file %s is invalid, the rules in force stay: %w", r.Src, err)
	}
	if bytes.Equal(data, r.text) && fileio.SameContent(r.CopyPath, data) {
		return res, nil
	}
	if err := fileio.WriteAtomicSync(r.CopyPath, data, rulesMode); err != nil {
		return res, fmt.Errorf("copy rules for the plugin: %w", err)
	}
	if err := fileio.WriteAtomicSync(r.Record, data, rulesMode); err != nil {
		return res, fmt.Errorf("record applied rules: %w", err)
	}
	old := r.applied
	r.applied, r.text = set, data
	if old == nil || old.Equal(set) {
		return res, nil
	}
	res.Changed = true
	res.Updated, res.Owned, err = applyDefaults(n, old, set)
	return res, err
}

// Keep makes sure, after a failed reload, that the host copy holds the
// rules in force: the plugin must never find it missing while the entry is
// in place. When none were ever applied, the built-in defaults are.
func (r *RuleSet) Keep() error {
	if r.applied == nil {
		text := []byte(rules.DefaultText(r.SidecarUID))
		if err := fileio.WriteAtomicSync(r.Record, text, rulesMode); err != nil {
			return fmt.Errorf("record applied rules: %w", err)
		}
		r.applied, r.text = rules.DefaultFor(r.SidecarUID), text
	}
	if fileio.SameContent(r.CopyPath, r.text) {
		return nil
	}
	if err := fileio.WriteAtomicSync(r.CopyPath, r.text, rulesMode); err != nil {
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
func applyDefaults(n RulesNode, old, set *rules.Set) (updated, owned int, err error) {
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
