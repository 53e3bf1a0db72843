package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

// Flag values are refused in our words: which flag, which value, what is
// expected; no strconv message reaches the user.
func TestFlagValueErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"conns", "--port", "http"}, `--port "http": want a port number 1..65535`},
		{[]string{"conns", "--port=-1"}, `--port "-1": want a port number 1..65535`},
		{[]string{"dump", "--snaplen", "lots"}, `--snaplen "lots": want a number of bytes 1..1024`},
		{[]string{"dump", "-c", "ten"}, `-c, --count "ten": want a number of messages (0: no limit)`},
		{[]string{"dump", "--duration", "5"}, `--duration "5": want a duration such as 30s or 5m (0: no limit)`},
		{[]string{"status", "--window", "x"}, `--window "x": want a duration such as 1s (0: no rates)`},
		{[]string{"disable", "--drain=maybe"}, `--drain "maybe": want true or false`},
		{[]string{"--no-headers=2", "stats"}, `--no-headers "2": want true or false`},
	} {
		r := runCtl(t, newFakeEngine(), "", tc.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "strconv") ||
			strings.Contains(r.stderr, "invalid syntax") {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
}

// Environment variables with bad values are named with what they want.
func TestEnvValueErrors(t *testing.T) {
	var errb strings.Builder
	code := Main(t.Context(), []string{"stats"}, Deps{Stdout: &strings.Builder{}, Stderr: &errb,
		Getenv: func(k string) string { return map[string]string{"MESH_ACCEL_NO_HEADERS": "yes please"}[k] },
		Open:   func(Config) (Engine, error) { return newFakeEngine(), nil }})
	if code != ExitUsage || !strings.Contains(errb.String(), `MESH_ACCEL_NO_HEADERS="yes please": want true or false`) {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// Typos get suggestions: commands, subcommands and flags.
func TestSuggestions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"stauts"}, "Did you mean this?\n\tstatus\n"},
		{[]string{"connz"}, "Did you mean this?\n\tconns\n"},
		{[]string{"rules", "aply"}, "Did you mean this?\n\tapply\n"},
		{[]string{"rules", "sho"}, "Did you mean this?\n\tshow\n"},
		{[]string{"conns", "--prot", "80"}, "Did you mean this?\n\t--port\n"},
		{[]string{"rules", "apply", "--dryrun"}, "Did you mean this?\n\t--dry-run\n"},
		{[]string{"--state-dri", "x", "status"}, "Did you mean this?\n\t--state-dir\n"},
	} {
		r := runCtl(t, newFakeEngine(), "", tc.args...)
		if r.code != ExitUsage || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	if r := runCtl(t, newFakeEngine(), "", "xyzzy"); strings.Contains(r.stderr, "Did you mean") {
		t.Errorf("a suggestion for nothing alike: %q", r.stderr)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"port", "port", 0}, {"prot", "port", 1}, {"pod", "port", 2}, {"", "ab", 2}, {"dryrun", "dry-run", 1}} {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
	}
}

// A permission error says that mesh-accelctl needs root and how to run it;
// other errors pass unchanged.
func TestNeedsRoot(t *testing.T) {
	perm := fmt.Errorf("open node state: %w", &fs.PathError{Op: "stat", Path: "/sys/fs/bpf/x", Err: syscall.EACCES})
	for _, err := range []error{perm, fmt.Errorf("load program: %w", syscall.EPERM)} {
		got := needsRoot(err)
		if !errors.Is(got, ErrNeedsRoot) || !errors.Is(got, os.ErrPermission) ||
			!strings.HasPrefix(got.Error(), "mesh-accelctl needs root (CAP_BPF, CAP_NET_ADMIN") ||
			!strings.Contains(got.Error(), "run it with sudo, or in the installer pod") {
			t.Errorf("needsRoot(%v) = %v", err, got)
		}
		if again := needsRoot(got); again != got {
			t.Errorf("needsRoot wrapped twice: %v", again)
		}
	}
	other := errors.New("no mesh-accel state")
	if needsRoot(other) != other || needsRoot(nil) != nil {
		t.Error("needsRoot changed an error that is not about permissions")
	}
	// A refused kernel probe is not reported as a kernel that lacks features.
	var out, errb strings.Builder
	code := Main(t.Context(), []string{"status"}, Deps{Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		CheckKernel: func() error {
			return fmt.Errorf("kernel lacks what mesh-accel needs: %w", fmt.Errorf("sockops programs: %w", syscall.EPERM))
		},
		Open: func(Config) (Engine, error) { return nil, perm }})
	if code != ExitError || !strings.Contains(out.String(), "NOT CHECKED") || strings.Contains(out.String(), "NOT READY") ||
		!strings.Contains(out.String(), "Node state:  unknown: /sys/fs/bpf/mesh-accel/") ||
		!strings.Contains(errb.String(), "mesh-accelctl needs root") {
		t.Errorf("status without root: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}
