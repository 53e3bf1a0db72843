// Package pcaptest runs Debian's tcpdump on pcap files for the tests of
// mesh-accelctl's dump (its unit tests and the node tests in test/ctl).
package pcaptest

import (
	"os"
	"os/exec"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// Tcpdump runs tcpdump with args (reading a file with -r needs no
// privileges) and returns its standard output; it fails the test when
// tcpdump cannot parse the file, and reports a missing tcpdump through
// testenv (skip locally, fail in CI).
func Tcpdump(tb testing.TB, args ...string) string {
	tb.Helper()
	bin, err := exec.LookPath("tcpdump")
	if err != nil {
		for _, p := range []string{"/usr/sbin/tcpdump", "/usr/bin/tcpdump"} {
			if _, serr := os.Stat(p); serr == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		testenv.Missing(tb, "tcpdump (apt-get install tcpdump)")
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		tb.Fatalf("tcpdump %v: %v: %s", args, err, stderr)
	}
	return string(out)
}
