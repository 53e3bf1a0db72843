package testenv

import (
	"os"
	"testing"
)

// Golden compares got with the golden file at path, or rewrites the file
// when UPDATE_GOLDEN is set.
func Golden(tb testing.TB, path string, got []byte) {
	tb.Helper()
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (UPDATE_GOLDEN=1 creates it)", err)
	}
	if string(got) != string(want) {
		tb.Errorf("%s differs (UPDATE_GOLDEN=1 rewrites it):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
