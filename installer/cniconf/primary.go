package cniconf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// confExtensions are the extensions of CNI config files, as containerd and
// CRI-O list them.
var confExtensions = []string{".conf", ".conflist", ".json"}

// ErrNoPrimary is returned while the CNI config directory holds no config.
var ErrNoPrimary = errors.New("no CNI config (.conf, .conflist, .json) yet")

// InvalidError is returned while the primary config cannot be used: empty,
// malformed, or in a CNI version the plugin does not speak.
type InvalidError struct {
	Path   string
	Reason string
}

// Error says which file is unusable, why, and that the installer waits.
func (e *InvalidError) Error() string {
	return fmt.Sprintf("primary CNI config %s %s: waiting for a valid one, nothing written", e.Path, e.Reason)
}

// primary is the primary CNI config as read from disk.
type primary struct {
	path string
	data []byte
	info fs.FileInfo
	list bool   // a .conflist (else a single-plugin .conf or .json)
	ver  string // its cniVersion
}

// findPrimary reads and checks the primary CNI config of dir: the file
// named name, else the lexicographically first config file. It is loaded
// with libcni exactly as the runtime loads it; an empty or invalid file is
// an *InvalidError (never skipped, see the package doc).
func findPrimary(dir, name string) (*primary, error) {
	path, err := primaryPath(dir, name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is gone", ErrNoPrimary, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read primary CNI config: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read primary CNI config: %w", err)
	}
	p := &primary{path: path, data: data, info: info, list: strings.HasSuffix(path, ".conflist")}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &InvalidError{path, fmt.Sprintf("is empty (%d bytes)", len(data))}
	}
	if p.ver, err = loadLikeRuntime(path, p.list); err != nil {
		return nil, &InvalidError{path, "is invalid: " + err.Error()}
	}
	if again, err := os.ReadFile(path); err != nil || !bytes.Equal(again, data) {
		return nil, &InvalidError{path, "changed while it was read"}
	}
	return p, nil
}

// primaryPath names the primary config file of dir.
func primaryPath(dir, name string) (string, error) {
	if name != "" {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("%w: %s: %w", ErrNoPrimary, path, err)
		}
		return path, nil
	}
	files, err := libcni.ConfFiles(dir, confExtensions)
	if err != nil {
		return "", fmt.Errorf("list CNI configs in %s: %w", dir, err)
	}
	if len(files) == 0 {
		return "", fmt.Errorf("%w in %s", ErrNoPrimary, dir)
	}
	sort.Strings(files)
	return files[0], nil
}

// loadLikeRuntime loads the config as containerd does and returns its CNI
// version: a .conflist with ConfListFromFile, anything else as a single
// plugin (it must have a type) converted with ConfListFromConf.
func loadLikeRuntime(path string, list bool) (string, error) {
	if list {
		l, err := libcni.ConfListFromFile(path)
		if err != nil {
			return "", err
		}
		return l.CNIVersion, nil
	}
	conf, err := libcni.ConfFromFile(path)
	if err != nil {
		return "", err
	}
	if conf.Network.Type == "" {
		return "", errors.New("no plugin type (a conflist in a .conf file?)")
	}
	l, err := libcni.ConfListFromConf(conf)
	if err != nil {
		return "", err
	}
	if len(l.Plugins) == 0 {
		return "", errors.New("no plugins")
	}
	return l.CNIVersion, nil
}

// conflistPath is the .conflist a single-plugin config converts into.
func conflistPath(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
}

// checkVersion fails when the plugin does not speak the config's CNI
// version: the runtime would then fail every pod's ADD.
func checkVersion(p *primary, supported []string) error {
	if supported == nil || slices.Contains(supported, p.ver) {
		return nil
	}
	return &InvalidError{p.path, fmt.Sprintf("has cniVersion %q, which the mesh-accel plugin does not speak (%s); "+
		"adding it would fail every pod's ADD", p.ver, strings.Join(supported, ", "))}
}
