// Package cniconf keeps the plugin's entry in the node's primary CNI
// config: it finds the primary the way containerd does (primary.go),
// splices the entry into its text byte-exactly (splice.go), writes it
// atomically and only over the bytes it read (write.go), and gives back the
// original bytes at uninstall, from a backup that survives a restart. The
// installer's package doc describes the behaviour.
package cniconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"

	"github.com/containernetworking/cni/libcni"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// pluginType is the entry's type: the plugin binary's name.
const pluginType = plugin.TypeName

// Entry is the plugin's entry in the primary conflist. Paths are the
// host's.
type Entry struct {
	Type string `json:"type"`
	// Capabilities make containerd pass the pod's annotations and cgroup
	// in runtimeConfig (plugin.CapPodAnnotations, plugin.CapCgroupPath).
	Capabilities map[string]bool `json:"capabilities"`
	// Kubeconfig is left out with installer.Config.NoPluginKubeconfig.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	RulesFile  string `json:"rulesFile"`
	LogFile    string `json:"logFile"`
	// BPFRoot and StateDir are written only when they differ from the
	// plugin's defaults.
	BPFRoot  string `json:"bpfRoot,omitempty"`
	StateDir string `json:"stateDir,omitempty"`
	// SidecarUID is written only when it is not nodestate.DefaultSidecarUID
	// (Istio's).
	SidecarUID uint32 `json:"sidecarUID,omitempty"`
	// ExcludeNamespaces is written only when it differs from
	// plugin.DefaultExcludeNamespaces ([] for none); FailOnError only when
	// true; PodQuota only when it is not bpf.DefaultPodQuota, MapSize only
	// when it is not bpf.DefaultMapSize.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitzero"`
	FailOnError       bool     `json:"failOnError,omitempty"`
	PodQuota          uint32   `json:"podQuota,omitempty"`
	MapSize           uint32   `json:"mapSize,omitempty"`
}

// backup is what the installer wrote into the primary config and what was
// there before, kept in memory and on disk (StateDir/installer) so that a
// restarted installer still gives back the original bytes.
type backup struct {
	Path     string      `json:"path"`     // the file written (a .conflist when converted)
	Original string      `json:"original"` // the primary as found (the .conf when converted)
	OrigData []byte      `json:"origData"`
	OrigMode fs.FileMode `json:"origMode"`
	Written  []byte      `json:"written"`
}

func (b *backup) converted() bool { return b.Path != b.Original }

// Conflists keeps the entry in the primary config.
type Conflists struct {
	// Dir is the CNI config directory; Name names the primary config in
	// it (empty: the lexicographically first .conf, .conflist or .json).
	Dir, Name string
	Entry     Entry
	// BackupPath is the backup of the original bytes
	// (nodestate.ConflistBackupPath).
	BackupPath string
	Supported  []string // CNI versions the plugin speaks; nil: not checked
	Log        *slog.Logger
	b          *backup
}

// Written names the file the entry was last written into and the primary
// config as it was found (a .conf converted into a .conflist); empty
// before the first write.
func (m *Conflists) Written() (path, original string) {
	if m.b == nil {
		return "", ""
	}
	return m.b.Path, m.b.Original
}

// LoadBackup reads the backup a previous run left, if any.
func (m *Conflists) LoadBackup() error {
	data, err := os.ReadFile(m.BackupPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read conflist backup: %w", err)
	}
	var b backup
	if err := json.Unmarshal(data, &b); err != nil {
		m.Log.Warn("ignoring a corrupt conflist backup", "path", m.BackupPath, "err", err)
		return nil
	}
	m.b = &b
	return nil
}

func (m *Conflists) saveBackup(b *backup) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode conflist backup: %w", err)
	}
	if err := fileio.WriteAtomicSync(m.BackupPath, data, 0o600); err != nil {
		return fmt.Errorf("save conflist backup: %w", err)
	}
	m.b = b
	return nil
}

// Ensure puts the entry into the primary config, unless it is there
// already, and reports whether it wrote. Errors wrapping [ErrNoPrimary] or
// an [*InvalidError] mean: wait, nothing was written. A config the primary
// CNI rewrites while the entry goes in is read again.
func (m *Conflists) Ensure() (bool, error) {
	for attempt := 1; ; attempt++ {
		wrote, err := m.ensureOnce()
		if !errors.Is(err, errConfigChanged) || attempt == 5 {
			return wrote, err
		}
		m.Log.Info("primary CNI config changed while the entry went in: reading it again", "err", err)
	}
}

func (m *Conflists) ensureOnce() (bool, error) {
	p, err := findPrimary(m.Dir, m.Name)
	if err != nil {
		return false, err
	}
	if err := checkVersion(p, m.Supported); err != nil {
		return false, err
	}
	if m.b != nil && m.b.Path != p.path && m.b.Original != p.path {
		// Another file became the primary: the old one gets its bytes back.
		m.Log.Info("primary CNI config changed: moving the entry", "from", m.b.Path, "to", p.path)
		if err := m.Restore(); err != nil {
			return false, err
		}
	}
	clean, n, err := m.strip(p)
	if err != nil {
		return false, err
	}
	want, target, err := m.render(p, clean)
	if err != nil {
		return false, err
	}
	if target == p.path && bytes.Equal(want, p.data) {
		return false, m.adopt(p, clean)
	}
	b := m.nextBackup(p, clean, n, target, want)
	if err := m.saveBackup(b); err != nil {
		return false, err
	}
	expect := p.data // the write must replace what the text was made from
	if target != p.path {
		expect = nil // a new .conflist beside the .conf
	}
	if err := writeConfig(target, want, expect, p.info); err != nil {
		return false, err
	}
	if target != p.path {
		if err := fileio.Remove(p.path); err != nil {
			return false, err
		}
	}
	return true, nil
}

// strip returns the primary's text without entries of ours and how many
// it held.
func (m *Conflists) strip(p *primary) ([]byte, int, error) {
	if !p.list {
		return p.data, 0, nil
	}
	clean, n, err := removePlugins(p.data, pluginType)
	if err != nil {
		return nil, 0, &InvalidError{p.path, "cannot be edited: " + err.Error()}
	}
	return clean, n, nil
}

// render returns the text with the entry last and the file it goes to.
func (m *Conflists) render(p *primary, clean []byte) ([]byte, string, error) {
	target := p.path
	if !p.list {
		target = conflistPath(p.path)
		if _, err := os.Lstat(target); err == nil && (m.b == nil || m.b.Path != target) {
			return nil, "", &InvalidError{p.path, fmt.Sprintf("cannot be converted: %s exists and is not ours", target)}
		}
		var err error
		if clean, err = confToConflist(clean); err != nil {
			return nil, "", &InvalidError{p.path, "cannot be converted: " + err.Error()}
		}
	}
	want, err := appendPlugin(clean, m.Entry)
	if err != nil {
		return nil, "", &InvalidError{p.path, "cannot be edited: " + err.Error()}
	}
	return want, target, nil
}

// nextBackup describes the write about to happen. The original is the
// backup's when the file is still what we wrote (a restart, or an entry to
// update), else the file's current text without our entry.
func (m *Conflists) nextBackup(p *primary, clean []byte, n int, target string, want []byte) *backup {
	if m.b != nil && m.b.Path == p.path && bytes.Equal(m.b.Written, p.data) {
		b := *m.b
		b.Written = want
		return &b
	}
	if n > 0 {
		m.Log.Warn("primary CNI config held an entry of ours that we did not write: replacing it", "path", p.path, "entries", n)
	}
	return &backup{Path: target, Original: p.path, OrigData: clean, OrigMode: p.info.Mode().Perm(), Written: want}
}

// adopt records an entry found in place (a restart): the on-disk backup
// still holds the original when the file is what it says we wrote.
func (m *Conflists) adopt(p *primary, clean []byte) error {
	if m.b != nil && m.b.Path == p.path && bytes.Equal(m.b.Written, p.data) {
		return nil
	}
	return m.saveBackup(&backup{Path: p.path, Original: p.path, OrigData: clean, OrigMode: p.info.Mode().Perm(), Written: p.data})
}

// Restore takes the entry out of the file the backup names: the original
// bytes when the file is still what we wrote, else the current text without
// the entry. Then the backup goes.
func (m *Conflists) Restore() error {
	b := m.b
	if b == nil {
		return nil
	}
	info, err := os.Stat(b.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		m.Log.Info("conflist we wrote is gone: nothing to restore", "path", b.Path)
	case err != nil:
		return fmt.Errorf("restore %s: %w", b.Path, err)
	default:
		err := m.restoreFile(b, info)
		for attempt := 1; errors.Is(err, errConfigChanged) && attempt < 5; attempt++ {
			m.Log.Info("primary CNI config changed while the entry came out: reading it again", "err", err)
			if info, err = os.Stat(b.Path); err == nil {
				err = m.restoreFile(b, info)
			}
		}
		if err != nil {
			return err
		}
	}
	if err := fileio.Remove(m.BackupPath); err != nil {
		return err
	}
	m.b = nil
	return nil
}

func (m *Conflists) restoreFile(b *backup, info fs.FileInfo) error {
	cur, err := os.ReadFile(b.Path)
	if err != nil {
		return fmt.Errorf("restore %s: %w", b.Path, err)
	}
	if !bytes.Equal(cur, b.Written) {
		// The primary CNI rewrote it: take out only our entry.
		clean, n, err := removePlugins(cur, pluginType)
		if err != nil || n == 0 {
			m.Log.Info("conflist rewritten by someone else, without our entry: left alone", "path", b.Path, "err", err)
			return nil
		}
		m.Log.Info("removing our entry from a conflist the primary CNI rewrote", "path", b.Path)
		return writeConfig(b.Path, clean, cur, info)
	}
	if !b.converted() {
		m.Log.Info("restoring the original conflist", "path", b.Path)
		return writeConfig(b.Path, b.OrigData, cur, info)
	}
	if _, err := os.Lstat(b.Original); err == nil {
		m.Log.Info("the primary CNI wrote its config again: removing our conversion", "path", b.Path, "config", b.Original)
	} else {
		m.Log.Info("restoring the original config", "path", b.Original, "conflist", b.Path)
		if err := fileio.WriteAtomicSync(b.Original, b.OrigData, b.OrigMode); err != nil {
			return err
		}
	}
	return fileio.Remove(b.Path)
}

// Uninstall takes the entry out: from the file the backup names (loaded
// from disk when this run never installed, e.g. its setup failed), then
// from the primary config if it still holds one without a backup, so that
// no config names the plugin once the installer is gone.
func (m *Conflists) Uninstall() error {
	if m.b == nil {
		if err := m.LoadBackup(); err != nil {
			return err
		}
	}
	if err := m.Restore(); err != nil {
		return err
	}
	p, err := findPrimary(m.Dir, m.Name)
	if err != nil || !p.list {
		return nil
	}
	clean, n, err := removePlugins(p.data, pluginType)
	if err != nil || n == 0 {
		return nil
	}
	m.Log.Warn("removing an entry of ours that no backup describes", "path", p.path, "entries", n)
	return writeConfig(p.path, clean, p.data, p.info)
}

// Referenced names the CNI config files of the directory that still run
// the plugin.
func (m *Conflists) Referenced() []string {
	files, err := libcni.ConfFiles(m.Dir, confExtensions)
	if err != nil {
		return nil
	}
	var out []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var conf struct {
			Type    string `json:"type"`
			Plugins []struct {
				Type string `json:"type"`
			} `json:"plugins"`
		}
		if json.Unmarshal(data, &conf) != nil {
			continue
		}
		named := conf.Type == pluginType
		for _, p := range conf.Plugins {
			named = named || p.Type == pluginType
		}
		if named {
			out = append(out, f)
		}
	}
	return out
}

// Present reports whether the primary config holds the entry.
func (m *Conflists) Present() error {
	p, err := findPrimary(m.Dir, m.Name)
	if err != nil {
		return err
	}
	if !p.list {
		return fmt.Errorf("primary CNI config %s has no entry of type %s", p.path, pluginType)
	}
	list, err := parsePluginList(p.data)
	if err != nil || list.count(pluginType) == 0 {
		return fmt.Errorf("primary CNI config %s has no entry of type %s", p.path, pluginType)
	}
	return nil
}

// DelegatesHoldEntry reports whether the config we wrote embeds (Multus'
// "delegates") a config that runs the plugin: Multus copied a primary
// config while it held our entry.
func (m *Conflists) DelegatesHoldEntry() bool {
	if m.b == nil {
		return false
	}
	var top struct {
		Delegates []struct {
			Type    string `json:"type"`
			Plugins []struct {
				Type string `json:"type"`
			} `json:"plugins"`
		} `json:"delegates"`
	}
	if json.Unmarshal(m.b.Written, &top) != nil {
		return false
	}
	for _, d := range top.Delegates {
		if d.Type == pluginType {
			return true
		}
		for _, p := range d.Plugins {
			if p.Type == pluginType {
				return true
			}
		}
	}
	return false
}
