// Package fileio writes the small files mesh-accel shares between its
// programs on a node (the plugin's pod records and failure counts, the
// Event spool, the namespace opt-in file) so that a reader never sees half
// of one, and serialises their writers with flock. It also opens the files
// of folders others may write (the plugin's log) for writer and reader
// alike.
package fileio

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// WriteAtomic replaces the file at path with data, with mode: a temporary
// file beside it, renamed over it. It does not sync: the plugin writes
// records on every pod's ADD, and a lost write after a power cut is
// repaired by the next ADD, DEL or GC.
func WriteAtomic(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, false)
}

// WriteAtomicSync is WriteAtomic, with the data synced before the rename.
func WriteAtomicSync(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, true)
}

func write(path string, data []byte, mode fs.FileMode, sync bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil && mode != 0o600 { // CreateTemp's mode
		err = f.Chmod(mode)
	}
	if err == nil && sync {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
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
