package installer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// tempPrefix starts the name of every temporary file the installer makes.
// Together with tempSuffix it keeps them out of what the runtime reads: a
// CNI config must end in .conf, .conflist or .json, and a plugin is found by
// its exact name.
const (
	tempPrefix = ".mesh-accel-"
	tempSuffix = ".tmp"
)

// writeFileAtomic replaces path with data, mode mode: a temporary file in
// the same directory is written, synced and renamed over path, then the
// directory is synced. A reader, or the host after a crash, sees the old
// file or the new one, never a part of it (istio#44167).
func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	return replaceFile(path, mode, nil, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

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
	return replaceFileChecked(real, old.Mode().Perm(), owner, check, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// replaceFile atomically replaces path with what fill writes, with mode and,
// when owner is given and differs from the process's, owner's uid and gid.
func replaceFile(path string, mode fs.FileMode, owner *syscall.Stat_t, fill func(io.Writer) error) error {
	return replaceFileChecked(path, mode, owner, nil, fill)
}

// replaceFileChecked is replaceFile with check, when not nil, run right
// before the rename: its error leaves path as it was.
func replaceFileChecked(path string, mode fs.FileMode, owner *syscall.Stat_t, check func() error, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix+filepath.Base(path)+"-*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = fill(f)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil && owner != nil && (int(owner.Uid) != os.Geteuid() || int(owner.Gid) != os.Getegid()) {
		// Best effort: without CAP_CHOWN the file gets the installer's owner.
		_ = f.Chown(int(owner.Uid), int(owner.Gid))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && check != nil {
		err = check()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

// removeStaleTemps removes the temporary files an installer killed in the
// middle of a write left in dirs (SIGKILL, OOM): the runtime ignores them,
// but they would pile up. One installer runs per node, so a temporary file
// found at start is nobody's.
func removeStaleTemps(dirs ...string) error {
	var errs []error
	for _, dir := range dirs {
		stale, err := filepath.Glob(filepath.Join(dir, tempPrefix+"*"+tempSuffix))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range stale {
			if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove stale %s: %w", f, err))
			}
		}
	}
	return errors.Join(errs...)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// removeFile removes path and syncs its directory; a missing file is not an
// error.
func removeFile(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// sameContent reports whether the file at path holds exactly data.
func sameContent(path string, data []byte) bool {
	cur, err := os.ReadFile(path)
	return err == nil && string(cur) == string(data)
}
