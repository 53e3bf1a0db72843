package cniconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
)

// errConfigChanged reports that a CNI config changed between the read
// its new text was made from and the rename that would replace it: the
// primary CNI wrote it meanwhile, and that write must not be lost.
var errConfigChanged = errors.New("changed by someone else while being rewritten")

// beforeConfigRename, when set (tests), runs right before a config's
// content is checked against what it was read as.
var beforeConfigRename func(path string)

// writeConfig replaces the CNI config at path with data, with the mode of
// old (the file being replaced) and its owner when the process may set it.
// A symlink stays a symlink: its target is rewritten. With expect given,
// the file must still hold expect right before the rename, else nothing is
// written and the error wraps errConfigChanged: the caller reads it again.
// (No file system offers compare-and-swap; the check narrows the window to
// the rename itself.)
func writeConfig(path string, data, expect []byte, old fs.FileInfo) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err != nil {
		real = path // a new file
	}
	var owner *syscall.Stat_t
	if st, ok := old.Sys().(*syscall.Stat_t); ok {
		owner = st
	}
	check := func() error {
		if expect == nil {
			return nil
		}
		if beforeConfigRename != nil {
			beforeConfigRename(path)
		}
		if cur, err := os.ReadFile(real); err != nil || !bytes.Equal(cur, expect) {
			return errConfigChanged
		}
		return nil
	}
	return fileio.Replace(real, fileio.Options{Mode: old.Mode().Perm(), Owner: owner, Sync: true, Check: check},
		func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
}
