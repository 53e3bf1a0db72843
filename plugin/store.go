package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// store is the plugin's part of the state folder (Config.StateDir), whose
// layout package nodestate owns: the folder's lock (shared by ADD and DEL,
// exclusive for GC), the pods' locks (64 stripes by a hash of the uid, so
// no file is left per pod: ADD and DEL of one pod uid), one record per
// attached pod, and the setup failures by reason ([ReadFailures]) with
// their lock.
//
// Every file is replaced atomically (temporary file, then rename), so a
// reader never sees half a record. Records are not fsynced: the node state
// they describe lives in bpffs, which does not survive a reboot either.
type store struct{ dir string }

// record says who attached a pod; package nodestate owns the format, which
// mesh-accelctl reads too.
type record = nodestate.Record

func (s store) podsDir() string              { return nodestate.PodsDir(s.dir) }
func (s store) recordPath(uid string) string { return nodestate.RecordPath(s.dir, uid) }

// lock takes the state folder's lock, shared or exclusive, until the
// returned function is called.
func (s store) lock(exclusive bool) (func(), error) {
	if err := os.MkdirAll(s.podsDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create state folder: %w", err)
	}
	return fileio.Flock(nodestate.LockPath(s.dir), exclusive)
}

// podLockStripes is the number of pod lock files.
const podLockStripes = 64

// lockPod takes the state folder's lock (shared) and the pod's own lock
// (exclusive) until the returned function is called: the ADD of a new
// sandbox and the DEL of an old one never interleave (the DEL would read
// the old record, then detach the new sandbox), while different pods
// proceed in parallel.
func (s store) lockPod(uid string) (func(), error) {
	unlock, err := s.lock(false)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(nodestate.PodLocksDir(s.dir), 0o700); err != nil {
		unlock()
		return nil, fmt.Errorf("create lock folder: %w", err)
	}
	h := fnv.New32a()
	h.Write([]byte(uid))
	unlockPod, err := fileio.Flock(nodestate.PodLockPath(s.dir, h.Sum32()%podLockStripes), true)
	if err != nil {
		unlock()
		return nil, err
	}
	return func() { unlockPod(); unlock() }, nil
}

// put writes the pod's record.
func (s store) put(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of pod %s: %w", r.PodUID, err)
	}
	return fileio.WriteAtomic(s.recordPath(r.PodUID), b, 0o600)
}

// get reads the pod's record; nil when there is none.
func (s store) get(uid string) (*record, error) { return nodestate.ReadRecord(s.dir, uid) }

// remove deletes the pod's record; it succeeds when there is none.
func (s store) remove(uid string) error {
	if err := os.Remove(s.recordPath(uid)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove record of pod %s: %w", uid, err)
	}
	return nil
}

// list returns every record, by pod uid. A corrupt record is returned
// with only its PodUID set, so that GC removes it.
func (s store) list() ([]record, error) {
	recs, err := nodestate.ListRecords(s.dir)
	if recs == nil && err != nil {
		return nil, err // the folder itself could not be read
	}
	return recs, nil
}

// FailureCount, Failures and ReadFailures are the format of failures.json,
// which package nodestate owns (the installer and mesh-accelctl read it).
type (
	FailureCount = nodestate.FailureCount
	Failures     = nodestate.Failures
)

// ReadFailures reads the failure counters of the state folder; empty when
// nothing ever failed.
func ReadFailures(stateDir string) (Failures, error) { return nodestate.ReadFailures(stateDir) }

// countFailure adds one failure of reason, for pod, to the counters.
func (s store) countFailure(reason Reason, pod string, cause error) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("count failure: %w", err)
	}
	unlock, err := fileio.Flock(nodestate.FailuresLockPath(s.dir), true)
	if err != nil {
		return fmt.Errorf("count failure: %w", err)
	}
	defer unlock()
	f, err := ReadFailures(s.dir)
	if err != nil {
		f = Failures{} // a corrupt file restarts from zero rather than never counting again
	}
	c := f[reason]
	c.Count++
	c.LastError, c.LastPod, c.LastTime = cause.Error(), pod, time.Now().UTC()
	f[reason] = c
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("count failure: %w", err)
	}
	return fileio.WriteAtomic(nodestate.FailuresPath(s.dir), b, 0o600)
}
