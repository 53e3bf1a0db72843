package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/rules"
)

func TestStatusWarnings(t *testing.T) {
	okPod := bpf.PodInfo{ID: "uid-a", Config: bpf.PodConfig{Rules: rules.Default()}}
	for _, tc := range []struct {
		name    string
		enabled bool
		pods    []bpf.PodInfo
		usage   bpf.Usage
		rates   map[bpf.Counter]float64
		want    []string // substrings, one per warning, in order
	}{
		{"quiet", true, []bpf.PodInfo{okPod}, bpf.Usage{Capacity: 100}, map[bpf.Counter]float64{"directions_untrusted_reader": 0}, nil},
		{"switch off", false, nil, bpf.Usage{}, nil, []string{"the global switch is off"}},
		{"pod disabled, no rules", true,
			[]bpf.PodInfo{{ID: "uid-b", Config: bpf.PodConfig{Rules: &rules.Set{}, Disabled: true}}}, bpf.Usage{}, nil,
			[]string{"pod shop/pay is disabled", "pod shop/pay: rules: no rules: every connection is accelerated"}},
		{"pod broken", true, []bpf.PodInfo{okPod, {ID: "uid-b", Config: bpf.PodConfig{Rules: &rules.Set{}},
			Broken: fmt.Errorf("%w: pod uid-b lacks its sockops link", bpf.ErrPodBroken)}}, bpf.Usage{}, nil,
			[]string{"pod shop/pay is broken, its new connections may not be accelerated (pod state incomplete: " +
				"pod uid-b lacks its sockops link): restart the pod"}},
		{"untrusted readers", true, nil, bpf.Usage{}, map[bpf.Counter]float64{"directions_untrusted_reader": 6},
			[]string{"6.0 pair directions per second take the normal stack because their reader is not trusted"}},
		{"splice and owners", true, nil, bpf.Usage{},
			map[bpf.Counter]float64{"rejected_untrusted_readers": 1, "rejected_no_owner": 2, "fallback_map_full": 0.5},
			[]string{"1.0 connections per second are not paired because a reader is not trusted",
				"2.0 connections per second have a socket without owner",
				"0.5 connections per second find a connection map full"}},
		{"maps near full", true, nil, bpf.Usage{Sockets: 80, Directions: 79, Pending: 100, Capacity: 100}, nil,
			[]string{"sock_ops_map (sockets) is 80% full (80 of 100)", "sock_helper_map (pending connections) is 100% full"}},
		{"pod at its quota", true, []bpf.PodInfo{{ID: "uid-a", Config: bpf.PodConfig{Rules: rules.Default(), Quota: 64},
			Usage: bpf.PodUsage{Entries: 64, Quota: 64}}}, bpf.Usage{}, nil,
			[]string{"pod shop/cart holds its quota of 64 connection-map entries"}},
		{"shared pool used up", true, []bpf.PodInfo{okPod},
			bpf.Usage{Share: bpf.Share{Guaranteed: 128, GuaranteedPods: 256, Pool: 32768, Borrowed: 32768}},
			map[bpf.Counter]float64{"rejected_shared_pool": 4},
			[]string{"the shared pool of the connection maps is used up (32768 of 32768 entries)",
				"4.0 connections per second take the normal stack because their pod holds more than its guaranteed share"}},
		{"more pods than the guarantee covers", true, []bpf.PodInfo{okPod, okPod, okPod},
			bpf.Usage{Share: bpf.Share{Guaranteed: 2, GuaranteedPods: 2, Pool: 4}}, nil,
			[]string{"3 pods are attached, more than the 2 the guaranteed shares"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := NewFileDirectory(defaultRecords(t))
			got := statusWarnings(tc.enabled, tc.pods, tc.usage, tc.rates, dir)
			if len(got) != len(tc.want) {
				t.Fatalf("%d warnings, want %d: %q", len(got), len(tc.want), got)
			}
			for i := range got {
				if !strings.Contains(got[i], tc.want[i]) {
					t.Errorf("warning %d: %q does not contain %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	eng := newFakeEngine()
	eng.counters["directions_untrusted_reader"] = 1000 // since the node state was created: no warning
	eng.onSleep = func() { eng.counters["directions_untrusted_reader"] += 2 }
	out := mustRun(t, eng, defaultRecords(t), "status")
	for _, want := range []string{
		"Kernel:", "ready (cgroup v2",
		"Node state:    " + StateDir(Config{Location: nodestate.Location{BPFFS: "/sys/fs/bpf", BPFRoot: "mesh-accel"}}) + " (layout " + bpf.LayoutVersion + ", maps of 65536 entries)",
		"Acceleration:  enabled",
		"4 sockets, 4 pair directions, 0 pending, of 65536 entries per map",
		"program  sk_msg  7   SkMsg",
		"Pods (2):", "shop/cart  enabled   1337         yes          2\n",
		"Warnings:", "! pod shop/pay is disabled", "! 2.0 pair directions per second take the normal stack",
		"annotate the pod accel.mesh/app-reads-with-recvmsg: \"true\"",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var r statusReport
	if err := json.Unmarshal([]byte(mustRun(t, eng, defaultRecords(t), "status", "-o", "json")), &r); err != nil {
		t.Fatal(err)
	}
	if !r.Kernel.Ready || !r.State.Present || !r.Enabled || len(r.Pods) != 2 || r.Pods[0].Name != "shop/cart" ||
		len(r.Pods[0].Rules) != 2 || r.Usage.Capacity != 65536 || r.State.MapSize != 65536 || len(r.Warnings) != 3 {
		t.Errorf("status JSON: %+v", r)
	}
}

// A broken pod is one pod's state: status lists it as BROKEN with what it
// lacks, the other pods as they are; acting on it by cgroup is refused
// with the reason.
func TestStatusBrokenPod(t *testing.T) {
	eng := newFakeEngine()
	eng.pods[1] = bpf.PodInfo{ID: "uid-b", Broken: fmt.Errorf("%w: pod uid-b lacks its sockops link, its sock_create link",
		bpf.ErrPodBroken)}
	out := mustRun(t, eng, defaultRecords(t), "status")
	for _, want := range []string{"Pods (2):", "shop/cart  enabled", "shop/pay   BROKEN", "! pod shop/pay is broken"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var r statusReport
	if err := json.Unmarshal([]byte(mustRun(t, eng, defaultRecords(t), "status", "-o", "json")), &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Pods) != 2 || r.Pods[0].Broken != "" || !strings.Contains(r.Pods[1].Broken, "lacks its sockops link") {
		t.Errorf("status JSON pods: %+v", r.Pods)
	}
	for _, args := range [][]string{{"conns", "-n", "shop", "pay"}, {"disable", "--drain", "-n", "shop", "pay"}} {
		res := runCtl(t, eng, defaultRecords(t), args...)
		if res.code == ExitOK || !strings.Contains(res.stderr, "its cgroup is unknown") {
			t.Errorf("%v on a broken pod: exit %d, stderr %q", args, res.code, res.stderr)
		}
	}
	if out := mustRun(t, eng, defaultRecords(t), "conns", "-n", "shop", "cart"); out == "" {
		t.Error("conns of a whole pod beside a broken one printed nothing")
	}
}

// Without node state status still shows the kernel, and fails.
func TestStatusNoState(t *testing.T) {
	var out, errb strings.Builder
	code := Main(t.Context(), []string{"status"}, Deps{
		Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		CheckKernel: func() error { return errors.New("kernel lacks what mesh-accel needs: sk_msg programs") },
		Open: func(c Config) (Engine, error) {
			return nil, errors.Join(ErrNoState, errors.New("at "+StateDir(c)))
		},
	})
	if code != ExitError || !strings.Contains(errb.String(), "no mesh-accel state") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	for _, want := range []string{"NOT READY: kernel lacks what mesh-accel needs: sk_msg programs", "Node state:  none at"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, out.String())
		}
	}
}

// Run without the installer's MESH_ACCEL_MAP_SIZE on a node whose state
// has another size, status names the state it finds and the setting that
// names it.
func TestStatusNoStateOfThisSize(t *testing.T) {
	fs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(fs, "mesh-accel", bpf.LayoutVersion+"-262144", "maps"), 0o700); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	code := Main(t.Context(), []string{"--bpffs", fs, "status"}, Deps{
		Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" },
		CheckKernel: func() error { return nil },
		Open: func(c Config) (Engine, error) {
			return nil, errors.Join(ErrNoState, errors.New("at "+StateDir(c)))
		},
	})
	want := "present: layout " + bpf.LayoutVersion + "-262144 of another map size (262144 entries) (--map-size or MESH_ACCEL_MAP_SIZE names the maps' size)"
	if code != ExitError || !strings.Contains(out.String(), "none at "+filepath.Join(fs, "mesh-accel", bpf.LayoutVersion)) ||
		!strings.Contains(out.String(), want) {
		t.Errorf("exit %d, stdout:\n%s\nwant %q", code, out.String(), want)
	}
}

// Status says which data path is pinned and warns when it is not this
// binary's (an upgrade that kept the node state).
func TestStatusDataPathSkew(t *testing.T) {
	eng := newFakeEngine()
	out := mustRun(t, eng, "", "status")
	if !strings.Contains(out, "data path 00000000000000aa\n") || strings.Contains(out, "NOT this binary") {
		t.Errorf("status without skew:\n%s", out)
	}
	eng.dataPaths = bpf.DataPaths{Pinned: "1111111111111111", Binary: "2222222222222222",
		Older: []bpf.Retiring{{Dir: "/sys/fs/bpf/mesh-accel/v1", Pods: 1, Sockets: 4}}}
	out = mustRun(t, eng, "", "status")
	for _, want := range []string{"data path 1111111111111111, NOT this binary's 2222222222222222",
		"the pinned data path 1111111111111111 is not this binary's 2222222222222222",
		"also present: layout v1 of another mesh-accel version, 1 pods, 4 sockets"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// --map-size (MESH_ACCEL_MAP_SIZE, which the DaemonSet sets for the
// installer) names the state status shows; a state of another size beside
// it is one an upgrade keeps for its connections, and says so.
func TestStatusMapSize(t *testing.T) {
	eng := newFakeEngine()
	eng.dataPaths = bpf.DataPaths{Pinned: "00000000000000aa", Binary: "00000000000000aa",
		Older: []bpf.Retiring{{Dir: "/sys/fs/bpf/mesh-accel/" + bpf.LayoutVersion, Pods: 2, Sockets: 6},
			{Dir: "/sys/fs/bpf/mesh-accel/" + bpf.LayoutVersion + "-16384", Pods: 0, Sockets: 2},
			{Dir: "/sys/fs/bpf/mesh-accel/v3", Pods: 0, Sockets: 1}}}
	out := mustRun(t, eng, "", "--map-size", "262144", "status")
	for _, want := range []string{
		"Node state:    /sys/fs/bpf/mesh-accel/" + bpf.LayoutVersion + "-262144 (layout " + bpf.LayoutVersion + ", maps of 262144 entries)",
		"also present: layout " + bpf.LayoutVersion + " of another map size (65536 entries), 2 pods, 6 sockets",
		"also present: layout " + bpf.LayoutVersion + "-16384 of another map size (16384 entries), 0 pods, 2 sockets",
		"also present: layout v3 of another mesh-accel version, 0 pods, 1 sockets",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// Warnings about traffic come from the counters' rates over the window,
// not from their totals; --window 0 measures nothing.
func TestStatusRates(t *testing.T) {
	eng := newFakeEngine()
	eng.counters["rejected_no_owner"] = 1 << 20 // long ago
	var r statusReport
	decode := func(args ...string) {
		t.Helper()
		r = statusReport{}
		if err := json.Unmarshal([]byte(mustRun(t, eng, "", append([]string{"status", "-o", "json"}, args...)...)), &r); err != nil {
			t.Fatal(err)
		}
	}
	decode()
	if r.Window != 1 || r.Rates["rejected_no_owner"] != 0 || slices.ContainsFunc(r.Warnings, func(s string) bool {
		return strings.Contains(s, "without owner")
	}) {
		t.Errorf("status warns about old counts: %+v", r)
	}
	eng.onSleep = func() { eng.counters["rejected_no_owner"] += 5 }
	decode("--window", "500ms")
	if r.Window != 0.5 || r.Rates["rejected_no_owner"] != 10 || !slices.ContainsFunc(r.Warnings, func(s string) bool {
		return strings.HasPrefix(s, "10.0 connections per second have a socket without owner")
	}) {
		t.Errorf("status does not warn about the rate: %+v", r)
	}
	decode("--window", "0")
	if r.Rates != nil || r.Window != 0 || len(r.Warnings) != 2 {
		t.Errorf("--window 0: %+v", r)
	}
}

// The plugin's setup failures are shown by reason; an unreadable file is
// a warning, not a failure of status.
func TestStatusSetupFailures(t *testing.T) {
	state := goldenState(t)
	out := mustRun(t, newFakeEngine(), state, "status", "--window", "0")
	for _, want := range []string{"Setup failures (the CNI plugin let these pods start without acceleration):",
		"annotation        2      shop/web  2026-12-01T10:00:00Z\n", "cgroup-not-found  1      shop/db"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "repeated option") {
		t.Errorf("the last error is shown without -o wide:\n%s", out)
	}
	if err := os.WriteFile(filepath.Join(state, "failures.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, newFakeEngine(), state, "status", "--window", "0")
	if strings.Contains(out, "Setup failures") || !strings.Contains(out, "! setup failures unknown: failure counters") {
		t.Errorf("status with a corrupt failures file:\n%s", out)
	}
	if out := mustRun(t, newFakeEngine(), defaultRecords(t), "status", "--window", "0"); strings.Contains(out, "Setup failures") {
		t.Errorf("setup failures shown without any:\n%s", out)
	}
}
