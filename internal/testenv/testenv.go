// Package testenv decides what a test does when the machine lacks something
// it needs (root, BPF, a kernel feature): locally it skips with a reason that
// names what is missing; in CI (the CI variable is set) it fails, so that a
// privileged test can never silently not run.
package testenv

import (
	"os"
	"testing"
)

// InCI reports whether the tests run under CI.
func InCI() bool { return os.Getenv("CI") != "" }

// Missing skips the test (locally) or fails it (in CI) because what is missing.
func Missing(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("CI requires: "+format, args...)
	}
	tb.Skipf("skipped, missing: "+format, args...)
}

// RequireRoot stops the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "root privileges (run the tests as root)")
	}
}
