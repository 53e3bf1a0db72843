package install

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// nextRelease builds "release N+1" of this tree: a copy of the module whose
// data path has a changed sk_msg program and a changed map layout (a new
// member at the head of struct pod_config, so that every other member
// moves, and a new LayoutVersion), regenerated with bpf2go and built like
// the image's binaries. It returns the folder of its binaries and its
// LayoutVersion. With sameLayout the maps stay as they are and only the
// sk_msg program changes.
func nextRelease(t *testing.T, sameLayout bool) (dir, layout string) {
	t.Helper()
	root, err := exec.Command(cnichain.GoTool(), "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Dir(strings.TrimSpace(string(root)))
	work := t.TempDir()
	tree := filepath.Join(work, "src")
	if err := copyTree(src, tree); err != nil {
		t.Fatal(err)
	}
	patch := func(file, re, repl string) {
		t.Helper()
		p := filepath.Join(tree, file)
		b := []byte(readFile(t, p))
		out := regexp.MustCompile(re).ReplaceAll(b, []byte(repl))
		if string(out) == string(b) {
			t.Fatalf("patch for release N+1: %q not found in %s", re, file)
		}
		writeFile(t, p, string(out), 0o644)
	}
	layout = bpf.LayoutVersion
	if !sameLayout {
		layout += "next"
		patch("bpf/node.go", `const LayoutVersion = "[^"]*"`, `const LayoutVersion = "`+layout+`"`)
		patch("bpf/c/mesh_accel.h", `struct pod_config \{\n`, "struct pod_config {\n\t__u32 next_release;\n")
	}
	patch("bpf/c/mesh_accel.c", `int mesh_sk_msg\(struct sk_msg_md \*msg\)\n\{\n`,
		"int mesh_sk_msg(struct sk_msg_md *msg)\n{\n\tif (msg->size == 0)\n\t\treturn SK_PASS;\n")
	run := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command(cnichain.GoTool(), args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("release N+1: go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(filepath.Join(tree, "bpf"), "generate", ".")
	dir = filepath.Join(work, "bin")
	ldflags := "-s -w -X github.com/mesh-accel/mesh-accel/internal/version.version=" + testVersion + "-next"
	run(tree, append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", dir + "/",
		"github.com/mesh-accel/mesh-accel/plugin/cmd/mesh-accel"}, ourPackages...)...)
	return dir, layout
}

// copyTree copies the module's files (not .git, nor built binaries).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() && (rel == ".git" || rel == "bin" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
}

// An upgrade under traffic: release N runs with accelerated pods and
// checksummed streams through them; release N+1 (another sk_msg program,
// another map layout) replaces its installer while the streams run. No
// byte is lost, duplicated or reordered and no connection fails; new
// connections are paired and redirected by N+1's programs while the old
// ones go on through N's; the pods are moved to N+1's state; N's state is
// gone once its last connection closed; status and /metrics say where the
// node stands throughout.
func TestUpgradeUnderTraffic(t *testing.T) {
	h := newHostNode(t)
	next, nextLayout := nextRelease(t, false)
	flags := h.flags(false)
	flags[installer.FlagSweepInterval] = "500ms"
	old := startInstaller(t, h.bin, flags)
	old.waitReady(t)
	a, b := h.addPod("a", false), h.addPod("b", true)
	oldDir := filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot, bpf.LayoutVersion)
	newDir := filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot, nextLayout)

	streams := startStreams(t, h, a, b)

	// The rollout: N's installer stops (keeping the node state), N+1's
	// starts with its own plugin binary.
	old.terminate(t)
	nflags := h.flags(false)
	nflags[installer.FlagSweepInterval] = "500ms"
	nflags[installer.FlagPluginBinary] = filepath.Join(next, "mesh-accel")
	inst := startInstaller(t, next, nflags)
	inst.waitReady(t)
	upgraded := time.Now()

	for _, p := range []*cnichain.Pod{a, b} {
		if !exists(filepath.Join(newDir, "pods", p.UID)) || exists(filepath.Join(oldDir, "pods", p.UID)) {
			t.Errorf("pod %s not moved to release N+1's state", p.Name)
		}
	}
	if got := inst.metric(t, installer.MetricDataPathSkewed); got != 0 {
		t.Errorf("%s = %v after the upgrade, want 0", installer.MetricDataPathSkewed, got)
	}
	_, metrics := inst.get(installer.PathMetrics)
	if !regexp.MustCompile(installer.MetricOlderStateSockets + `\{layout="` + bpf.LayoutVersion + `"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics does not show release N's state with its sockets:\n%s", grepLines(metrics, "data_path"))
	}
	status := ctl(t, next, h, "status")
	if !strings.Contains(status, "also present: layout "+bpf.LayoutVersion+" of another mesh-accel version, 0 pods") ||
		strings.Contains(status, "NOT this binary") {
		t.Errorf("status during the upgrade:\n%s", status)
	}

	// Old connections go on through N's data path...
	before := h.counters()["bytes_redirected"]
	waitFor(t, "release N's data path still redirecting the old connections", func() bool {
		return h.counters()["bytes_redirected"] > before+8<<20
	})
	// ...and new ones go through N+1's.
	accepted, redirected := inst.metric(t, installer.MetricConnectionsAccepted), inst.metric(t, installer.MetricRedirectedBytes)
	res := a.RunTestClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, Seed: 99})
	if !res.OK {
		t.Fatalf("new connection after the upgrade: %v", res.Errors)
	}
	// Redirected, if not every byte: flow control may carry part on the
	// stack while a sidecar falls behind (the old streams load it).
	if inst.metric(t, installer.MetricConnectionsAccepted) <= accepted || inst.metric(t, installer.MetricRedirectedBytes) <= redirected {
		t.Errorf("a new connection was not paired and redirected by release N+1: accepted %v -> %v, bytes %v -> %v",
			accepted, inst.metric(t, installer.MetricConnectionsAccepted), redirected, inst.metric(t, installer.MetricRedirectedBytes))
	}

	streams.check(t, upgraded)

	// The last old connection closed: N's state goes.
	waitFor(t, "release N's state removed", func() bool { return !exists(oldDir) })
	if _, metrics = inst.get(installer.PathMetrics); strings.Contains(metrics, installer.MetricOlderStateSockets+"{") {
		t.Errorf("/metrics still shows an older state:\n%s", grepLines(metrics, "data_path"))
	}
	if status = ctl(t, next, h, "status"); strings.Contains(status, "also present") {
		t.Errorf("status after the older state went:\n%s", status)
	}
	// A new pod is attached by N+1's plugin, and DELs work on moved pods.
	c := h.addPod("c", true)
	if !exists(filepath.Join(newDir, "pods", c.UID)) {
		t.Error("pod created after the upgrade not attached to release N+1's state")
	}
	for _, p := range []*cnichain.Pod{a, b, c} {
		if err := h.chain.DelPod(p); err != nil {
			t.Errorf("DEL of %s after the upgrade: %v", p.Name, err)
		}
		if exists(filepath.Join(newDir, "pods", p.UID)) {
			t.Errorf("DEL left pod %s attached", p.Name)
		}
	}
	inst.terminate(t)
}

// An upgrade that keeps the map layout: release N+1's programs replace
// N's in place while streams run. Sockets paired before keep N's sk_msg
// (the kernel took it when they joined the map), new ones get N+1's, the
// pods' links run N+1's sockops; nothing is lost and the node reports no
// skew.
func TestUpgradeSameLayoutUnderTraffic(t *testing.T) {
	h := newHostNode(t)
	next, layout := nextRelease(t, true)
	old := startInstaller(t, h.bin, h.flags(false))
	old.waitReady(t)
	a, b := h.addPod("a", false), h.addPod("b", true)
	streams := startStreams(t, h, a, b)
	pinned := func() string {
		return strings.TrimSpace(grepLines(ctl(t, next, h, "status"), "data path"))
	}
	before := pinned()

	old.terminate(t)
	nflags := h.flags(false)
	nflags[installer.FlagPluginBinary] = filepath.Join(next, "mesh-accel")
	inst := startInstaller(t, next, nflags)
	inst.waitReady(t)
	upgraded := time.Now()
	after := pinned()
	if after == before || strings.Contains(after, "NOT this binary") {
		t.Errorf("data path not replaced in place: before %q, after %q", before, after)
	}
	if got := inst.metric(t, installer.MetricDataPathSkewed); got != 0 {
		t.Errorf("%s = %v after the upgrade, want 0", installer.MetricDataPathSkewed, got)
	}
	for _, p := range []*cnichain.Pod{a, b} {
		if !exists(filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot, layout, "pods", p.UID)) {
			t.Errorf("pod %s lost its state", p.Name)
		}
	}
	accepted := inst.metric(t, installer.MetricConnectionsAccepted)
	if res := a.RunTestClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20}); !res.OK {
		t.Fatalf("new connection after the upgrade: %v", res.Errors)
	}
	if inst.metric(t, installer.MetricConnectionsAccepted) <= accepted {
		t.Error("a new connection was not paired after the upgrade")
	}
	streams.check(t, upgraded)
	inst.terminate(t)
}

// streams run through both sidecars from a to b's app while the upgrade
// runs: slow-read bulk streams (flow control at work) and request/response
// exchanges, every byte checked.
type streams struct {
	wg      sync.WaitGroup
	results chan streamResult
}

type streamResult struct {
	mode  string
	res   *sim.ClientResult
	err   error
	ended time.Time
}

// startStreams starts them and waits until they run accelerated under the
// installed release.
func startStreams(t *testing.T, h *hostNode, a, b *cnichain.Pod) *streams {
	t.Helper()
	s := &streams{results: make(chan streamResult, 2)}
	for _, spec := range []sim.ClientSpec{
		{Mode: sim.ModeBulk, Op: sim.OpSinkSlow, ReadSleep: 2 * time.Millisecond, Target: b.AppTarget(false),
			Streams: 2, Bytes: 320 << 20, MaxWrite: 256 << 10, Seed: 7, Timeout: 2 * time.Minute},
		{Mode: sim.ModeRR, Target: b.AppTarget(false), Streams: 2, Size: 4096, Duration: 12 * time.Second,
			Timeout: time.Minute},
	} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := a.RunClient(ctx, spec)
			s.results <- streamResult{spec.Mode, res, err, time.Now()}
		}()
	}
	waitFor(t, "the streams paired under the installed release", func() bool {
		c := h.counters()
		return c["connections_accepted"] >= 4 && c["bytes_redirected"] > 4<<20
	})
	return s
}

// check waits for the streams' end: every byte verified, no connection
// error, and each ran past the moment the upgrade was done.
func (s *streams) check(t *testing.T, upgraded time.Time) {
	t.Helper()
	s.wg.Wait()
	close(s.results)
	for r := range s.results {
		if r.err != nil {
			t.Fatalf("%s: %v", r.mode, r.err)
		}
		if !r.res.OK || r.res.ErrorCount != 0 || r.res.Mismatches != 0 {
			t.Errorf("%s across the upgrade: %d errors, %d mismatches: %v", r.mode, r.res.ErrorCount, r.res.Mismatches, r.res.Errors)
		}
		if !r.ended.After(upgraded) {
			t.Errorf("%s ended before the upgrade was done: it proves nothing", r.mode)
		}
		t.Logf("%s: %d bytes verified over %d connections in %.1f s, ending %.1f s after the upgrade", r.mode, r.res.Bytes,
			r.res.Conns, r.res.ElapsedSec, r.ended.Sub(upgraded).Seconds())
	}
}

// ctl runs the mesh-accelctl of the binaries in dir against the node.
func ctl(t *testing.T, dir string, h *hostNode, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "mesh-accelctl"), append(args, "--"+installer.FlagBPFRoot+"="+h.bpfRoot,
		"--"+installer.FlagStateDir+"="+h.chain.Params.StateDir)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mesh-accelctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
