package sim

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// TestProcessPlacement checks where and as whom pod processes run: the
// sidecar as 1337, the app as 1000, any program as asked, each in its pod's
// cgroup and network namespace, without supplementary groups.
func TestProcessPlacement(t *testing.T) {
	n := NewTestNode(t, NodeOptions{Prefix: "mat"})
	p := n.AddTestPod(t, PodOptions{Name: "p", Sidecar: true})
	cg, err := cgroupv2.Mount()
	if err != nil {
		t.Fatal(err)
	}
	wantCgroup := "0::/" + strings.TrimPrefix(p.CgroupDir, cg+"/")
	if id, err := cgroupv2.ID(p.CgroupDir); err != nil || id != p.CgroupID {
		t.Errorf("CgroupID %d, cgroupv2.ID %d, %v", p.CgroupID, id, err)
	}
	var nsStat unix.Stat_t
	if err := unix.Stat(p.Netns, &nsStat); err != nil {
		t.Fatal(err)
	}
	check := func(what string, pid int, uid int) {
		t.Helper()
		status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		cgroup, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		var st unix.Stat_t
		_ = unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st)
		want := strings.Repeat(fmt.Sprint(uid)+" ", 4)
		if u, g, groups := statusField(status, "Uid"), statusField(status, "Gid"), statusField(status, "Groups"); u+" " != want || g+" " != want || groups != "" {
			t.Errorf("%s: uid %q gid %q groups %q, want %d everywhere and no groups", what, u, g, groups, uid)
		}
		if !strings.Contains(string(cgroup), wantCgroup+"\n") {
			t.Errorf("%s: cgroup %q, want %q", what, cgroup, wantCgroup)
		}
		if st.Ino != nsStat.Ino || st.Dev != nsStat.Dev {
			t.Errorf("%s: not in the pod's network namespace", what)
		}
	}
	check("sidecar", p.Sidecar().Pid(), SidecarUID)
	check("app", p.App().Pid(), 1000)
	proc, err := p.Start(context.Background(), ProcSpec{
		Argv: []string{"sh", "-c", "echo ready; exec sleep 60"}, UID: 4321, GID: 4321, Ready: "ready",
	})
	if err != nil {
		t.Fatal(err)
	}
	check("sleep", proc.Pid(), 4321)
	if err := proc.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(); err == nil {
		t.Error("killed process exited cleanly")
	}
}

// TestStartProgram runs an ordinary program pair (iperf3) in two pods: the
// server announces itself on stdout, the client's connection goes through
// both sidecars.
func TestStartProgram(t *testing.T) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		testenv.Missing(t, "iperf3")
	}
	n := NewTestNode(t, NodeOptions{})
	a := n.AddTestPod(t, PodOptions{Name: "a", Sidecar: true, NoApp: true})
	b := n.AddTestPod(t, PodOptions{Name: "b", Sidecar: true, NoApp: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := b.Start(ctx, ProcSpec{Argv: []string{"iperf3", "-s", "-p", "5201", "-1", "--forceflush"}, UID: 1000, GID: 1000,
		Ready: "Server listening"})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := a.Start(ctx, ProcSpec{Argv: []string{"iperf3", "-c", b.IPv6.String(), "-p", "5201", "-n", "20M", "-J"},
		UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Wait(); err != nil {
		t.Fatalf("iperf3 client: %v\n%s\n%s", err, cli.Stdout(), cli.Stderr())
	}
	if err := srv.Wait(); err != nil {
		t.Fatalf("iperf3 server: %v\n%s", err, srv.Stderr())
	}
	if !strings.Contains(cli.Stdout(), `"sum_received"`) {
		t.Errorf("no iperf3 result:\n%s", cli.Stdout())
	}
	rc := counts(t, a, b)
	if rc[0].Outbound6 == 0 || rc[1].Inbound6 == 0 {
		t.Errorf("iperf3 bypassed the sidecars: %+v", rc)
	}
}

// TestReadyTimeout: a server that never prints its ready line makes Start
// fail with the process's stderr, and the process is gone.
func TestReadyTimeout(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	p := n.AddTestPod(t, PodOptions{Name: "p", NoApp: true})
	_, err := p.Start(context.Background(), ProcSpec{
		Argv: []string{"sh", "-c", "echo oops >&2; exec sleep 60"}, Ready: "never", ReadyTimeout: 300 * time.Millisecond,
	})
	if err == nil || !strings.Contains(err.Error(), "oops") {
		t.Fatalf("Start = %v, want a ready timeout quoting stderr", err)
	}
	if pids := cgroupPids(filepath.Clean(p.CgroupDir)); len(pids) != 0 {
		t.Errorf("processes left in the pod: %v", pids)
	}
}

// statusField returns the fields of a /proc/<pid>/status line, space-joined.
func statusField(status []byte, key string) string {
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "?"
}
