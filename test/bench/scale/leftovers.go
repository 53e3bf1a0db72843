package scale

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"golang.org/x/sys/unix"
)

// The simulator's janitor removes a killed run's cgroups, namespace and
// processes; its node state under bpffs is swept here, by the next run.
const (
	rootPrefix = "mesh-accel-bench-scale-"     // the node state's root under bpffs
	locksDir   = "/run/mesh-accel-bench-scale" // one lock per live run, named after its root
)

// lockRun creates and locks the lock of the run whose node state is root;
// the lock lives as long as the returned file stays open (the process).
func lockRun(root string) (*os.File, error) {
	if err := os.MkdirAll(locksDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock run: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(locksDir, root+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock run: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock run %s: %w", f.Name(), err)
	}
	return f, nil
}

// unlockRun removes the run's lock and closes it, and the locks' folder
// when no other run has one there.
func unlockRun(f *os.File) error {
	if f == nil {
		return nil
	}
	err := errors.Join(os.Remove(f.Name()), f.Close())
	_ = os.Remove(locksDir) // fails while another lock is there
	return err
}

// sweepLeftovers removes the node state of earlier runs that no live
// process holds the lock of (killed outright), and their locks.
func sweepLeftovers() error {
	entries, err := os.ReadDir(nodestate.DefaultBPFFS)
	if err != nil {
		return fmt.Errorf("sweep leftovers: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), rootPrefix) {
			continue
		}
		f, err := lockRun(e.Name())
		if errors.Is(err, unix.EWOULDBLOCK) {
			continue // a live run
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Unpinning removes the maps, programs and pod links.
		if err := os.RemoveAll(filepath.Join(nodestate.DefaultBPFFS, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("sweep leftovers: %w", err))
		}
		errs = append(errs, unlockRun(f))
	}
	return errors.Join(errs...)
}
