package fileio

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A replaced file holds the new data with the given mode, and no temporary
// file is left; a failed write leaves the old file as it was.
func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.json")
	for i, write := range []func(string, []byte, os.FileMode) error{WriteAtomic, WriteAtomicSync} {
		data := []byte{'a' + byte(i)}
		if err := write(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		st, serr := os.Stat(p)
		if err != nil || serr != nil || string(b) != string(data) || st.Mode().Perm() != 0o640 {
			t.Errorf("write %d: %q, %v, mode %v", i, b, err, st.Mode())
		}
	}
	if err := WriteAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing folder succeeded")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}

// An exclusive lock waits for the one held.
func TestFlock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	unlock, err := Flock(p, true)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	go func() {
		u, err := Flock(p, true)
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a second exclusive lock was granted while the first was held")
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the second lock was not granted after the first was released")
	}
}
