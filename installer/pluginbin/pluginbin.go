// Package pluginbin is the installer's handling of the CNI plugin's
// binary: its atomic copy into the host's CNI bin directory ([Install]),
// the CNI versions it speaks ([Versions]), and the pods it recorded as
// attached ([Records]), which keep it installed at uninstall.
package pluginbin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/plugin"
)

// Name is the plugin binary's name in the CNI bin directory, its type in a
// conflist.
const Name = plugin.TypeName

// binaryMode is the mode of the installed plugin binary.
const binaryMode fs.FileMode = 0o755

// Install copies the plugin binary src to dir/mesh-accel: a temporary
// file in dir, synced, mode 0755, then renamed, so that the runtime never
// runs a half-written binary, and a running plugin keeps the old file. An
// identical binary already in place is left alone. It reports whether it
// wrote.
func Install(src, dir string) (bool, error) {
	dst := filepath.Join(dir, Name)
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

// Records lists the pods the plugin recorded as attached
// (StateDir/pods/<uid>.json): pods the runtime has yet to send a DEL.
func Records(stateDir string) ([]string, error) {
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

// Versions asks the plugin binary which CNI versions it speaks, as a
// runtime does (CNI_COMMAND=VERSION).
func Versions(binary string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary)
	cmd.Env = []string{"CNI_COMMAND=VERSION"}
	cmd.Stdin = bytes.NewReader([]byte(`{"cniVersion":"1.1.0"}`))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ask %s for its CNI versions: %w: %s", binary, err, bytes.TrimSpace(stderr.Bytes()))
	}
	var info struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info.SupportedVersions) == 0 {
		return nil, fmt.Errorf("ask %s for its CNI versions: unexpected answer %q", binary, out)
	}
	return info.SupportedVersions, nil
}
