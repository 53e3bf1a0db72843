package nsoptin

import (
	"os"
	"slices"
	"testing"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	if s, err := Read(dir); err != nil || len(s) != 0 {
		t.Fatalf("Read without a file = %v, %v; want none", s, err)
	}
	if err := Write(dir, Set{"shop": true, "a": true, Never: true, "off": false}); err != nil {
		t.Fatal(err)
	}
	s, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Sorted(); !slices.Equal(got, []string{"a", "shop"}) {
		t.Errorf("read %v, want [a shop]", got)
	}
	if st, err := os.Stat(Path(dir)); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v (%v), want 0644", st.Mode(), err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("files left: %v", ents)
	}
}

func TestReadCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(Path(dir), []byte("["), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil {
		t.Error("a corrupt file read without error")
	}
	// A file naming kube-system (written by hand) does not opt it in.
	if err := os.WriteFile(Path(dir), []byte(`{"namespaces":["kube-system","x"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if s, err := Read(dir); err != nil || s[Never] || !s["x"] {
		t.Errorf("Read = %v, %v", s, err)
	}
}
