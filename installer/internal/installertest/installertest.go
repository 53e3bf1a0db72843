// Package installertest holds the test helpers the installer's packages
// share: file trees, golden folders, polling and a logger into the test's
// log.
package installertest

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// UpdateGolden rewrites the golden files instead of comparing with them.
var UpdateGolden = os.Getenv("UPDATE_GOLDEN") != ""

// ReadTree returns the regular files under dir by relative path.
func ReadTree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = string(b)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// WriteTree writes files (relative path -> content) under dir, mode 0644.
func WriteTree(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// SameTree fails unless dir holds exactly want.
func SameTree(tb testing.TB, what, dir string, want map[string]string) {
	tb.Helper()
	got := ReadTree(tb, dir)
	for rel, w := range want {
		if g, ok := got[rel]; !ok {
			tb.Errorf("%s: %s missing", what, rel)
		} else if g != w {
			tb.Errorf("%s: %s differs:\ngot:\n%s\nwant:\n%s", what, rel, g, w)
		}
	}
	for rel := range got {
		if _, ok := want[rel]; !ok {
			tb.Errorf("%s: unexpected file %s:\n%s", what, rel, got[rel])
		}
	}
}

// GoldenTree compares dir with the golden folder (UPDATE_GOLDEN=1 rewrites
// it).
func GoldenTree(tb testing.TB, dir, golden string) {
	tb.Helper()
	if UpdateGolden {
		if err := os.RemoveAll(golden); err != nil {
			tb.Fatal(err)
		}
		WriteTree(tb, golden, ReadTree(tb, dir))
		return
	}
	if _, err := os.Stat(golden); err != nil {
		tb.Fatalf("%v (UPDATE_GOLDEN=1 creates it)", err)
	}
	SameTree(tb, "golden "+golden+" (UPDATE_GOLDEN=1 rewrites it)", dir, ReadTree(tb, golden))
}

// FileMode returns the permission bits of the file at path.
func FileMode(tb testing.TB, path string) fs.FileMode {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return st.Mode().Perm()
}

// Exists reports whether path exists (a symlink need not resolve).
func Exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// WaitFor polls cond until it holds, failing the test after a generous
// deadline (the machine may be busy: no tight timings).
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	tb.Fatalf("timed out waiting for %s", what)
}

// Log is a logger that writes to the test's log.
func Log(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ReplaceWith writes a file the way a CNI installer does: a temporary file
// (with the mode of the file it replaces), then a rename.
func ReplaceWith(tb testing.TB, path, content string) {
	tb.Helper()
	mode := os.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := filepath.Join(filepath.Dir(path), "cni-writing.tmp")
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// BridgeConflist is a primary CNI config: a bridge conflist.
const BridgeConflist = `{
  "cniVersion": "1.0.0",
  "name": "bridge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "subnet": "10.88.0.0/16"}}
  ]
}
`

// PromLint gathers g and fails the test on every problem promlint finds
// (names, units, help).
func PromLint(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
