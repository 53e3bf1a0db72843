package fileio

import (
	"errors"
	"io"
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

// Replace keeps the file as it was when its check fails, gives the file
// its mode, and leaves no temporary file; RemoveStaleTemps removes the
// temporary files a killed writer left, and nothing else.
func TestReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "10-net.conflist")
	if err := WriteAtomicSync(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := errors.New("changed")
	err := Replace(p, Options{Mode: 0o600, Sync: true, Check: func() error { return changed }}, func(w io.Writer) error {
		_, err := w.Write([]byte("new"))
		return err
	})
	if !errors.Is(err, changed) || !SameContent(p, []byte("old")) {
		t.Errorf("failed check: %v, file %q", err, readFile(t, p))
	}
	if err := Replace(p, Options{Mode: 0o600}, writeData([]byte("new"))); err != nil || !SameContent(p, []byte("new")) {
		t.Errorf("replace: %v, file %q", err, readFile(t, p))
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode: %v, %v", st, err)
	}
	stale := filepath.Join(dir, TempPrefix+"10-net.conflist-123"+TempSuffix)
	other := filepath.Join(dir, ".tmp-kept")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !IsTemp(filepath.Base(stale)) || !IsTemp(filepath.Base(other)) || IsTemp("10-net.conflist") {
		t.Error("IsTemp does not tell temporary files from others")
	}
	if err := RemoveStaleTemps(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != ".tmp-kept" || ents[1].Name() != "10-net.conflist" {
		t.Errorf("after RemoveStaleTemps: %v", ents)
	}
	if err := Remove(p); err != nil || Remove(p) != nil {
		t.Errorf("remove, then remove again: %v", err)
	}
}

func readFile(tb testing.TB, p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
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
