// Package eventspool owns the spool through which the CNI plugin hands
// Kubernetes Events to the installer: the plugin must neither wait for nor
// depend on the API server during a pod's ADD, so a failed setup leaves a
// small record in <stateDir>/events/, and the installer posts it as an Event
// of the pod and then removes it.
//
// The folder holds one file per pod and failure reason, <key>.json, which
// repeated failures of the same pod update (Count, Last) instead of adding
// files: a pod in a crash loop costs one file. At most [MaxRecords] files
// are kept; a record that would exceed the bound is dropped ([ErrFull]).
// Every update happens under an flock of events/.lock, and every file is
// replaced atomically (temporary file, then rename), so a reader never sees
// half a record and no update is lost between the installer's post and its
// removal of the record ([Done]).
package eventspool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mesh-accel/mesh-accel/internal/fileio"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// MaxRecords bounds the files of the spool, so that failures on a node
// whose installer does not post (no API server, installer down) cannot
// fill its disk.
const MaxRecords = 256

// MaxMessage bounds a record's message (an Event's message is limited to
// 1 KiB by the API server).
const MaxMessage = 1024

// ErrFull is returned by [Add] when the spool holds MaxRecords files and
// the record is a new one.
var ErrFull = errors.New("event spool full")

// Dir is the spool folder under the plugin's state folder
// ([nodestate.EventsDir]).
func Dir(stateDir string) string { return nodestate.EventsDir(stateDir) }

// Record is one pending Event: a pod whose acceleration could not be set
// up, Count times between First and Last, for Reason (the plugin's failure
// reason, such as "cgroup-not-found"). Message says what failed and what to
// do; the latest failure's message is kept.
type Record struct {
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	UID       string    `json:"uid,omitempty"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	Count     int32     `json:"count"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
}

// Key names the record's file: one per pod (its uid, else its namespace and
// name) and reason.
func (r Record) Key() string {
	pod := r.UID
	if pod == "" {
		pod = r.Namespace + "_" + r.Name
	}
	return safe(pod) + "." + safe(r.Reason)
}

// safe keeps the characters of a file name that cannot escape the folder.
func safe(s string) string {
	return strings.Map(func(c rune) rune {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			return c
		}
		return '_'
	}, s)
}

func path(dir, key string) string { return filepath.Join(dir, key+".json") }

// Add records one failure: a new record, or one more occurrence of a record
// of the same pod and reason (Count + 1, Last and Message updated). It
// returns ErrFull when the record is new and the spool full.
func Add(dir string, r Record) error {
	if r.Namespace == "" || r.Name == "" || r.Reason == "" {
		return fmt.Errorf("spool event: record lacks the pod's namespace, name or the reason: %+v", r)
	}
	if len(r.Message) > MaxMessage {
		r.Message = r.Message[:MaxMessage-3] + "..."
	}
	if r.Count <= 0 {
		r.Count = 1
	}
	if r.Last.IsZero() {
		r.Last = time.Now().UTC()
	}
	if r.First.IsZero() {
		r.First = r.Last
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("spool event: %w", err)
	}
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	old, err := read(path(dir, r.Key()))
	switch {
	case err == nil:
		r.Count += old.Count
		r.First = old.First
	case errors.Is(err, fs.ErrNotExist):
		n, err := count(dir)
		if err != nil {
			return err
		}
		if n >= MaxRecords {
			return fmt.Errorf("spool event in %s (%d records): %w", dir, n, ErrFull)
		}
	default: // a corrupt record is replaced
	}
	return write(dir, r)
}

// List returns the records of the spool, oldest Last first. A record that
// cannot be read is skipped and reported in the error (next to what could
// be read); a missing folder holds none.
func List(dir string) ([]Record, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list event spool: %w", err)
	}
	var (
		out  []Record
		errs []error
	)
	for _, e := range ents {
		if !isRecord(e.Name()) {
			continue
		}
		r, err := read(filepath.Join(dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // posted meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Last.Before(out[j].Last) })
	return out, errors.Join(errs...)
}

// Done removes what of a record was posted: the record, or, when the
// plugin counted more failures since it was listed, only the occurrences
// posted (the rest stays, to be posted next).
func Done(dir string, posted Record) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	p := path(dir, posted.Key())
	cur, err := read(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil || cur.Count <= posted.Count || !cur.Last.After(posted.Last) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove posted event %s: %w", p, err)
		}
		return nil
	}
	cur.Count -= posted.Count
	cur.First = posted.Last
	return write(dir, cur)
}

// Drop removes a record that can never be posted (its pod is gone), and
// records that cannot be read.
func Drop(dir, key string) error {
	unlock, err := lock(dir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := os.Remove(path(dir, key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop event %s: %w", key, err)
	}
	return nil
}

// Clean removes the files of the spool that are not readable records, and
// the temporary files that a writer killed mid-write left (older than a
// minute, so that no write in progress loses its file).
func Clean(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var errs []error
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if fileio.IsTemp(e.Name()) {
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove stale %s: %w", p, err))
				}
			}
			continue
		}
		if !isRecord(e.Name()) {
			continue
		}
		if _, err := read(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, Drop(dir, strings.TrimSuffix(e.Name(), ".json")))
		}
	}
	return errors.Join(errs...)
}

func isRecord(name string) bool {
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".")
}

func count(dir string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("count event spool: %w", err)
	}
	n := 0
	for _, e := range ents {
		if isRecord(e.Name()) {
			n++
		}
	}
	return n, nil
}

func read(p string) (Record, error) {
	var r Record
	b, err := os.ReadFile(p)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("event record %s is corrupt: %w", p, err)
	}
	return r, nil
}

// write replaces the record's file atomically.
func write(dir string, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode event record: %w", err)
	}
	return fileio.WriteAtomic(path(dir, r.Key()), b, 0o600)
}

// lock takes the spool's flock until the returned function is called.
func lock(dir string) (func(), error) { return fileio.Flock(filepath.Join(dir, ".lock"), true) }
