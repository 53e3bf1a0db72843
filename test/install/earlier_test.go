package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/installer"
	"github.com/mesh-accel/mesh-accel/internal/nodestate"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/cnichain"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// earlierCommit is the first landed build with the installer ("installer:
// DaemonSet program ...", layout v1): the earliest release this harness
// can drive (the commits before it have no installer), and the one
// issue 19 item 8 was measured with. Its struct sock_owner is {uid, gid,
// pod}, without the seen member that 2663027 added, so the sockets
// created under it have their owners in a storage of another format than
// this build's. Its installer knows every flag hostNode.flags gives.
const earlierCommit = "f031c1d3037ee357cce6e84f42e51328fe6509ff"

// earlierPackages are the binaries of a release at earlierCommit: the
// plugin, the installer and the CLI, as the image holds them.
var earlierPackages = []string{
	"github.com/mesh-accel/mesh-accel/plugin/cmd/mesh-accel",
	"github.com/mesh-accel/mesh-accel/installer/cmd/mesh-accel-installer",
	"github.com/mesh-accel/mesh-accel/ctl/cmd/mesh-accelctl",
}

// moduleRoot is the folder of this module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(cnichain.GoTool(), "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// earlierRelease builds the release of an earlier commit of this
// repository: its source exported with git archive, its plugin, installer
// and CLI built the way nextRelease builds a release. It returns the
// folder of the binaries; the source stays beside it (earlierSource).
// Without the commit (a shallow clone) the test cannot run: it fails
// under CI and skips locally.
func earlierRelease(t *testing.T, commit string) (binDir string) {
	t.Helper()
	root := moduleRoot(t)
	if out, err := exec.Command("git", "-C", root, "cat-file", "-e", commit+"^{commit}").CombinedOutput(); err != nil {
		testenv.Missing(t, "the git history: commit %s, the earlier build this test upgrades from, is not in %s "+
			"(a shallow clone? fetch the full history): %v %s", commit, root, err, out)
	}
	work := t.TempDir()
	srcDir, binDir := earlierSource(filepath.Join(work, "bin")), filepath.Join(work, "bin")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := exec.Command("git", "-C", root, "archive", commit)
	untar := exec.Command("tar", "-x", "-C", srcDir)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var archiveErr, untarOut testenv.SyncBuffer
	archive.Stderr, untar.Stdin = &archiveErr, pipe
	untar.Stdout, untar.Stderr = &untarOut, &untarOut
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := archive.Run(); err != nil {
		_ = untar.Wait()
		t.Fatalf("git archive %s: %v\n%s", commit, err, archiveErr.String())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("extract the source of %s: %v\n%s", commit, err, untarOut.String())
	}
	for _, pkg := range earlierPackages {
		dir := filepath.Join(srcDir, strings.TrimPrefix(pkg, "github.com/mesh-accel/mesh-accel/"))
		if !exists(dir) {
			t.Fatalf("commit %s has no package %s", commit, pkg)
		}
	}
	// As nextRelease builds (a tree without internal/version ignores -X).
	ldflags := "-s -w -X github.com/mesh-accel/mesh-accel/internal/version.version=" + testVersion + "-" + commit[:7]
	cmd := exec.Command(cnichain.GoTool(), append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", binDir + "/"},
		earlierPackages...)...)
	cmd.Dir, cmd.Env = srcDir, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the release of %s: %v\n%s", commit, err, out)
	}
	return binDir
}

// earlierSource is the source of the release whose binaries are in binDir
// (earlierRelease).
func earlierSource(binDir string) string { return filepath.Join(filepath.Dir(binDir), "src") }

// earlierFlags keeps of flags those the installer in src defines (the
// Flag* constants of its source); a flag it does not know would stop it.
func earlierFlags(t *testing.T, src string, flags map[string]string) map[string]string {
	t.Helper()
	known := map[string]bool{}
	def := regexp.MustCompile(`\bFlag\w+\s*=\s*"([a-z0-9-]+)"`)
	files, _ := filepath.Glob(filepath.Join(src, "installer", "*.go"))
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		for _, m := range def.FindAllStringSubmatch(readFile(t, f), -1) {
			known[m[1]] = true
		}
	}
	if !known[installer.FlagListen] || !known[installer.FlagBPFRoot] {
		t.Fatalf("no installer flag definitions found in %s/installer (found %d)", src, len(known))
	}
	out := map[string]string{}
	var dropped []string
	for k, v := range flags {
		if known[k] {
			out[k] = v
		} else {
			dropped = append(dropped, k)
		}
	}
	sort.Strings(dropped)
	if len(dropped) > 0 {
		t.Logf("flags the earlier installer does not define, not given: %v", dropped)
	}
	return out
}

// earlierLayout reads the LayoutVersion of the release in src.
func earlierLayout(t *testing.T, src string) string {
	t.Helper()
	m := regexp.MustCompile(`const LayoutVersion = "([^"]+)"`).FindStringSubmatch(readFile(t, filepath.Join(src, "bpf/node.go")))
	if m == nil {
		t.Fatalf("no LayoutVersion in %s/bpf/node.go", src)
	}
	return m[1]
}

// An upgrade from a real earlier build (earlierCommit) whose struct
// sock_owner differs from this build's: its installer attaches two pods
// with Envoy sidecars, so that every listener (the app's, the sidecars')
// is created under it, with its owner in that build's owner storage; then
// this build's installer replaces it on the same node state. A new
// connection through those listeners is paired and redirected by this
// build's programs, none refused for want of an owner (rejected_no_owner),
// also once the earlier state is gone; a stream that spans the upgrade
// arrives whole; the earlier state is removed once its connections closed;
// DEL of the pods works.
func TestUpgradeFromEarlierBuild(t *testing.T) {
	h := newHostNode(t)
	earlier := earlierRelease(t, earlierCommit)
	src := earlierSource(earlier)
	oldLayout := earlierLayout(t, src)
	if oldLayout == bpf.LayoutVersion {
		t.Fatalf("the earlier build has this build's layout %s: it tests nothing here", oldLayout)
	}
	// The premise: the earlier build's struct sock_owner is of the older
	// format (no seen member), so its owners are in a storage this build
	// does not share.
	header := readFile(t, filepath.Join(src, "bpf/c/mesh_accel.h"))
	owner := regexp.MustCompile(`struct sock_owner \{([^}]*)\}`).FindStringSubmatch(header)
	if owner == nil || regexp.MustCompile(`\bseen\b`).MatchString(owner[1]) {
		t.Fatalf("commit %s does not have the older struct sock_owner (without seen): %q", earlierCommit, owner)
	}
	oldDir := filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot, oldLayout)
	newDir := filepath.Join(nodestate.DefaultBPFFS, h.bpfRoot, bpf.LayoutVersion)

	// The earlier release installs its own plugin binary and attaches the
	// pods: their processes, and so every listener, start under it.
	oflags := earlierFlags(t, src, h.flags(false))
	oflags[installer.FlagPluginBinary] = filepath.Join(earlier, "mesh-accel")
	old := startInstaller(t, earlier, oflags)
	old.waitReady(t)
	if readFile(t, filepath.Join(h.binDir, "mesh-accel")) != readFile(t, filepath.Join(earlier, "mesh-accel")) {
		t.Fatal("the earlier installer did not install its plugin binary")
	}
	a, b := h.addPod("a", false), h.addPod("b", true)
	cached := h.chain.List // the config the runtime ran the pods' ADD with
	for _, p := range []*cnichain.Pod{a, b} {
		if !exists(filepath.Join(oldDir, "pods", p.UID)) || !h.record(p) {
			t.Fatalf("pod %s not attached by the earlier release (state %v, record %v)", p.Name,
				exists(filepath.Join(oldDir, "pods", p.UID)), h.record(p))
		}
	}
	// Its counters are read through its own installer (h.counters opens
	// this build's state, which would create it).
	accepted := old.metric(t, installer.MetricConnectionsAccepted)
	a.RunCheckedClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, Seed: 1})
	if got := old.metric(t, installer.MetricConnectionsAccepted); got <= accepted {
		t.Fatalf("the earlier release accelerated nothing: connections accepted %v -> %v", accepted, got)
	}

	// A checksummed exchange that spans the upgrade keeps the earlier
	// state alive (its sockets are in that state's maps).
	type result struct {
		res   *sim.ClientResult
		err   error
		ended time.Time
	}
	span := make(chan result, 1)
	spanAccepted := old.metric(t, installer.MetricConnectionsAccepted)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := a.RunClient(ctx, sim.ClientSpec{Mode: sim.ModeRR, Target: b.AppTarget(false), Size: 4096,
			Duration: 10 * time.Second, Timeout: 30 * time.Second, Seed: 2})
		span <- result{res, err, time.Now()}
	}()
	waitFor(t, "the spanning exchange paired under the earlier release", func() bool {
		return old.metric(t, installer.MetricConnectionsAccepted) > spanAccepted
	})

	// The rollout: the earlier installer stops (keeping the node state),
	// this build's starts with its own plugin binary.
	old.terminate(t)
	stopped := time.Now()
	nflags := h.flags(false)
	nflags[installer.FlagSweepInterval] = "500ms"
	inst := startInstaller(t, h.bin, nflags)
	inst.waitReady(t)
	upgraded := time.Now()
	if readFile(t, filepath.Join(h.binDir, "mesh-accel")) != readFile(t, filepath.Join(h.bin, "mesh-accel")) {
		t.Error("this build's installer did not install its plugin binary")
	}
	for _, p := range []*cnichain.Pod{a, b} {
		if !exists(filepath.Join(newDir, "pods", p.UID)) || exists(filepath.Join(oldDir, "pods", p.UID)) {
			t.Errorf("pod %s not moved to this build's state", p.Name)
		}
	}
	if !exists(oldDir) {
		t.Errorf("the earlier state is gone while a connection paired under it runs")
	}

	// A new connection, through listeners created under the earlier
	// release, is paired and redirected by this build's programs.
	newConnection := func(when string, seed int64) {
		t.Helper()
		before, accepted := h.counters(), inst.metric(t, installer.MetricConnectionsAccepted)
		a.RunCheckedClient(t, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 4 << 20, Seed: seed})
		d := h.counters().Sub(before)
		t.Logf("new connection %s: connections accepted %d, bytes redirected %d, rejected_no_owner %d", when,
			d["connections_accepted"], d["bytes_redirected"], d["rejected_no_owner"])
		if d["rejected_no_owner"] != 0 || d["connections_accepted"] == 0 || d["bytes_redirected"] == 0 ||
			inst.metric(t, installer.MetricConnectionsAccepted) <= accepted {
			t.Errorf("a new connection to listeners created under the earlier release, %s: connections accepted %d "+
				"(metric %v -> %v), bytes redirected %d, rejected_no_owner %d; want accepted and redirected, none rejected",
				when, d["connections_accepted"], accepted, inst.metric(t, installer.MetricConnectionsAccepted),
				d["bytes_redirected"], d["rejected_no_owner"])
		}
	}
	newConnection("while the earlier state lives", 3)

	r := <-span
	if r.err != nil {
		t.Fatalf("the exchange across the upgrade: %v", r.err)
	}
	if !r.res.OK || r.res.ErrorCount != 0 || r.res.Mismatches != 0 {
		t.Errorf("the exchange across the upgrade: %d errors, %d mismatches: %v", r.res.ErrorCount, r.res.Mismatches, r.res.Errors)
	}
	if !r.ended.After(upgraded) {
		t.Errorf("the exchange ended before the upgrade was done (%.1f s after the earlier installer's stop): "+
			"the earlier state's life proves nothing", r.ended.Sub(stopped).Seconds())
	}
	t.Logf("exchange across the upgrade: %d bytes verified over %d connections, ending %.1f s after it", r.res.Bytes,
		r.res.Conns, r.ended.Sub(upgraded).Seconds())

	// Its last connection closed, the earlier state goes; its listeners
	// serve on, and new connections through them are still accelerated.
	waitFor(t, "the earlier state removed", func() bool { return !exists(oldDir) })
	if _, metrics := inst.get(installer.PathMetrics); strings.Contains(metrics, installer.MetricOlderStateSockets+"{") {
		t.Errorf("/metrics still shows an older state:\n%s", grepLines(metrics, "data_path"))
	}
	newConnection("after the earlier state was removed", 4)

	// DEL of the pods, through the config the runtime cached at their ADD
	// (the earlier release's entry), by this build's plugin.
	h.chain.List = cached
	for _, p := range []*cnichain.Pod{a, b} {
		if err := h.chain.DelPod(p); err != nil {
			t.Errorf("DEL of %s after the upgrade: %v", p.Name, err)
		}
		if exists(filepath.Join(newDir, "pods", p.UID)) || h.record(p) {
			t.Errorf("DEL left pod %s attached", p.Name)
		}
	}
	inst.terminate(t)
}
