package ctl

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Each global flag is bound to one variable: flag beats variable beats
// default.
func TestConfigFlagsAndEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want Config
	}{
		{"defaults", nil, nil, Config{nodestate.Location{BPFFS: "/sys/fs/bpf", BPFRoot: "mesh-accel",
			StateDir: "/var/lib/mesh-accel", MapSize: 65536}, OutputTable, false, ""}},
		{"environment", map[string]string{"MESH_ACCEL_BPFFS": "/b", "MESH_ACCEL_BPF_ROOT": "r",
			"MESH_ACCEL_STATE_DIR": "/p", "MESH_ACCEL_OUTPUT": "json", "MESH_ACCEL_NO_HEADERS": "true",
			"MESH_ACCEL_NODE_NAME": "n1", "MESH_ACCEL_MAP_SIZE": "262144"}, nil,
			Config{nodestate.Location{BPFFS: "/b", BPFRoot: "r", StateDir: "/p", MapSize: 262144}, OutputJSON, true, "n1"}},
		{"flags win", map[string]string{"MESH_ACCEL_BPFFS": "/b", "MESH_ACCEL_OUTPUT": "json", "MESH_ACCEL_MAP_SIZE": "262144"},
			[]string{"--bpffs", "/f", "--bpf-root", "x", "--state-dir", "/q", "-o", "table", "--no-headers", "--node-name", "n2",
				"--map-size", "1024"},
			Config{nodestate.Location{BPFFS: "/f", BPFRoot: "x", StateDir: "/q", MapSize: 1024}, OutputTable, true, "n2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Config
			var errb bytes.Buffer
			code := Main(context.Background(), append(tc.args, "stats"), Deps{
				Stdout: &bytes.Buffer{}, Stderr: &errb,
				Getenv: func(k string) string { return tc.env[k] },
				Open: func(c Config) (Engine, error) {
					got = c
					return newFakeEngine(), nil
				},
			})
			if code != ExitOK {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if got != tc.want {
				t.Errorf("config %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Command line mistakes exit with 2 and say how to get help; failures
// exit with 1.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"status"}, ExitOK, ""},
		{[]string{}, ExitOK, ""},
		{[]string{"nosuch"}, ExitUsage, `unknown command "nosuch"`},
		{[]string{"rules", "nosuch"}, ExitUsage, `unknown command "nosuch" for "mesh-accelctl rules"`},
		{[]string{"status", "extra"}, ExitUsage, "unknown command"},
		{[]string{"--nosuch", "status"}, ExitUsage, "unknown flag: --nosuch"},
		{[]string{"-o", "xml", "status"}, ExitUsage, `--output (or MESH_ACCEL_OUTPUT) "xml": want one of table, wide, json, yaml`},
		{[]string{"--map-size", "1000", "status"}, ExitUsage,
			"--map-size (or MESH_ACCEL_MAP_SIZE) 1000 entries: want a power of two from 1024 to 1048576"},
		{[]string{"rules", "check"}, ExitUsage, "--file FILE is required"},
		{[]string{"conns", "--addr", "nope"}, ExitUsage, `--addr "nope": not an IP address`},
		{[]string{"conns", "--port", "70000"}, ExitUsage, `--port "70000": want a port number 1..65535`},
		{[]string{"dump", "--snaplen", "2000"}, ExitUsage, "--snaplen 2000: want 1..1024"},
		{[]string{"stats", "5s"}, ExitUsage, `unexpected argument "5s"`},
		{[]string{"stats", "--watch", "soon"}, ExitUsage, "not a duration"},
		{[]string{"enable", "--pod", "shop/nosuch"}, ExitError, "no record of pod shop/nosuch on this node (node-a)"},
		{[]string{"rules", "check", "-f", "/nonexistent"}, ExitError, "no such file"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := runCtl(t, newFakeEngine(), defaultRecords(t), tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.msg) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tc.msg)
			}
			if tc.code == ExitUsage && !strings.Contains(r.stderr, "--help' for usage") {
				t.Errorf("usage error without a pointer to --help: %q", r.stderr)
			}
		})
	}
}

// The engine is closed at the end of every run that opened it.
func TestEngineClosed(t *testing.T) {
	eng := newFakeEngine()
	mustRun(t, eng, "", "stats")
	if !eng.closed {
		t.Error("engine not closed")
	}
}
