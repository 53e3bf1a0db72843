// Package fileio is mesh-accel's one atomic writer: every file its
// programs write on a node (the plugin's pod records and failure counts,
// the Event spool, the namespace opt-in file, and the installer's CNI
// configs, plugin binary, kubeconfig and rules copy) replaces the old one
// with a temporary file and a rename, so that a reader never sees half of
// one. It serialises the writers of shared files with flock. It also opens the files
// of folders others may write (the plugin's log) for writer and reader
// alike.
package fileio

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// TempPrefix and TempSuffix frame the name of every temporary file the
// writers of this package make beside the file they replace. They keep
// the temporary files out of what other programs read: a CNI config must
// end in .conf, .conflist or .json, a plugin is found by its exact name,
// and the readers of the state folder skip names starting with a dot.
const (
	TempPrefix = ".mesh-accel-"
	TempSuffix = ".tmp"
	// legacyTempPrefix started the temporary files of earlier versions of
	// the plugin, which an upgraded node may still hold.
	legacyTempPrefix = ".tmp-"
)

// IsTemp reports whether a file name is one of this package's temporary
// files, or one an earlier version of mesh-accel made.
func IsTemp(name string) bool {
	return strings.HasPrefix(name, TempPrefix) && strings.HasSuffix(name, TempSuffix) ||
		strings.HasPrefix(name, legacyTempPrefix)
}

// WriteAtomic replaces the file at path with data, with mode: a temporary
// file beside it, renamed over it. It does not sync: the plugin writes
// records on every pod's ADD, and a lost write after a power cut is
// repaired by the next ADD, DEL or GC.
func WriteAtomic(path string, data []byte, mode fs.FileMode) error {
	return Replace(path, Options{Mode: mode}, writeData(data))
}

// WriteAtomicSync is WriteAtomic, with the data synced before the rename
// and the directory after it: a reader, or the host after a crash, sees
// the old file or the new one, never a part of it (istio#44167).
func WriteAtomicSync(path string, data []byte, mode fs.FileMode) error {
	return Replace(path, Options{Mode: mode, Sync: true}, writeData(data))
}

func writeData(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// Options say how [Replace] writes a file.
type Options struct {
	// Mode is the file's mode.
	Mode fs.FileMode
	// Owner, when set and not the process's uid and gid, gives the file
	// its uid and gid (best effort: without CAP_CHOWN the file gets the
	// process's owner).
	Owner *syscall.Stat_t
	// Sync syncs the data before the rename and the directory after it.
	Sync bool
	// Check, when set, runs right before the rename: its error leaves
	// the file as it was, and is returned wrapped.
	Check func() error
}

// Replace atomically replaces the file at path with what fill writes: a
// temporary file in the same directory ([TempPrefix]), renamed over path.
// On any error the temporary file is removed and path is left as it was.
func Replace(path string, o Options, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+"-*"+TempSuffix)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	err = fill(f)
	if err == nil && o.Mode != 0o600 { // CreateTemp's mode
		err = f.Chmod(o.Mode)
	}
	if err == nil && o.Owner != nil && (int(o.Owner.Uid) != os.Geteuid() || int(o.Owner.Gid) != os.Getegid()) {
		_ = f.Chown(int(o.Owner.Uid), int(o.Owner.Gid)) // best effort, see Options.Owner
	}
	if err == nil && o.Sync {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil && o.Check != nil {
		err = o.Check()
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if o.Sync {
		return SyncDir(dir)
	}
	return nil
}

// RemoveStaleTemps removes the temporary files ([IsTemp]) that a writer
// killed in the middle of a write (SIGKILL, OOM) left in dirs: readers
// ignore them, but they would pile up. Only a caller that knows no write is
// in progress in dirs may call it (the installer at start, for the
// folders only it writes).
func RemoveStaleTemps(dirs ...string) error {
	var errs []error
	for _, dir := range dirs {
		stale, err := filepath.Glob(filepath.Join(dir, TempPrefix+"*"+TempSuffix))
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

// SyncDir makes a rename or removal in dir durable.
func SyncDir(dir string) error {
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

// Remove removes the file at path and syncs its directory; a missing file
// is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SameContent reports whether the file at path holds exactly data.
func SameContent(path string, data []byte) bool {
	cur, err := os.ReadFile(path)
	return err == nil && bytes.Equal(cur, data)
}

// Flock locks the file at path (created if needed), shared or exclusive,
// until the returned function is called.
func Flock(path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// OpenOwned opens the file at path with flag (and perm, when flag creates
// it) as root does safely in a hostPath folder others may write: never
// through a symlink (O_NOFOLLOW), only a regular file (O_NONBLOCK: a FIFO
// does not hang the open), and only one owned by this process's user. The
// plugin appends to its log with it, and the installer follows the log.
func OpenOwned(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK, perm)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link: refused", path)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); err == nil && ok && int(sys.Uid) != os.Geteuid() {
		err = fmt.Errorf("owned by uid %d, not %d", sys.Uid, os.Geteuid())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
