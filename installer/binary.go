package installer

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// PluginType is the plugin's type in a conflist and its binary's name in the
// CNI bin directory.
const PluginType = plugin.TypeName

// binaryMode is the mode of the installed plugin binary.
const binaryMode fs.FileMode = 0o755

// installBinary copies the plugin binary src to dir/mesh-accel: a temporary
// file in dir, synced, mode 0755, then renamed, so that the runtime never
// runs a half-written binary, and a running plugin keeps the old file. An
// identical binary already in place is left alone. It reports whether it
// wrote.
func installBinary(src, dir string) (bool, error) {
	dst := filepath.Join(dir, PluginType)
	same, err := sameFile(src, dst)
	if err != nil {
		return false, err
	}
	if same {
		return false, nil
	}
	in, err := os.Open(src)
	if err != nil {
		return false, fmt.Errorf("install plugin binary: %w", err)
	}
	defer in.Close()
	err = fileio.Replace(dst, fileio.Options{Mode: binaryMode, Sync: true}, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("install plugin binary: %w", err)
	}
	return true, nil
}

// sameFile reports whether dst exists with src's content and mode 0755.
func sameFile(src, dst string) (bool, error) {
	di, err := os.Stat(dst)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("install plugin binary: %w", err)
	}
	si, err := os.Stat(src)
	if err != nil {
		return false, fmt.Errorf("install plugin binary: %w", err)
	}
	if !di.Mode().IsRegular() || di.Mode().Perm() != binaryMode || di.Size() != si.Size() {
		return false, nil
	}
	a, err := fileHash(src)
	if err != nil {
		return false, err
	}
	b, err := fileHash(dst)
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

func fileHash(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("install plugin binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("install plugin binary: read %s: %w", path, err)
	}
	return h.Sum(nil), nil
}

// pluginRecords lists the pods the plugin recorded as attached
// (StateDir/pods/<uid>.json): pods the runtime has yet to send a DEL.
func pluginRecords(stateDir string) ([]string, error) {
	ents, err := os.ReadDir(nodestate.PodsDir(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list the plugin's pod records: %w", err)
	}
	var uids []string
	for _, e := range ents {
		if uid, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && !strings.HasPrefix(uid, ".") {
			uids = append(uids, uid)
		}
	}
	return uids, nil
}
