package sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// envTestOwner makes the test binary a node owner that waits to be killed
// (see runTestOwner).
const envTestOwner = "MESHSIM_TEST_OWNER"

// nodeInfo is everything a node made, for leftover checks.
type nodeInfo struct {
	Manifest manifest
	Pids     []int // app, sidecar and program processes
	Janitor  int
}

// populate builds a node with two sidecar pods, traffic and an extra
// program, and describes it.
func populate(n *Node) (nodeInfo, error) {
	var info nodeInfo
	a, err := n.AddPod(PodOptions{Name: "a", Sidecar: true})
	if err != nil {
		return info, err
	}
	b, err := n.AddPod(PodOptions{Name: "b", SidecarSplice: true})
	if err != nil {
		return info, err
	}
	r, err := a.RunClient(context.Background(), ClientSpec{Mode: ModeEcho, Target: b.AppTarget(true), Bytes: 1 << 20})
	if err != nil || !r.OK {
		return info, fmt.Errorf("echo: %v %+v", err, r)
	}
	sleep, err := a.Start(context.Background(), ProcSpec{Argv: []string{"sleep", "600"}, UID: 1000, GID: 1000})
	if err != nil {
		return info, err
	}
	n.mu.Lock()
	info.Manifest = n.man
	n.mu.Unlock()
	info.Pids = []int{a.App().Pid(), a.Sidecar().Pid(), b.App().Pid(), b.Sidecar().Pid(), sleep.Pid()}
	info.Janitor = n.jan.cmd.Process.Pid
	return info, nil
}

// runTestOwner is the body of a child process: make a node, print its
// description, wait to be killed.
func runTestOwner() int {
	n, err := NewNode(NodeOptions{Prefix: "mak"})
	if err == nil {
		var info nodeInfo
		if info, err = populate(n); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(info)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	select {}
}

// leftovers lists what of info still exists.
func leftovers(info nodeInfo) []string {
	var left []string
	m := info.Manifest
	for _, p := range append([]string{m.CgroupDir, m.TempDir, jsonPath(m.Name), lockPath(m.Name)}, m.Netns...) {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			left = append(left, p)
		}
	}
	for _, l := range append([]string{m.Bridge}, m.Veths...) {
		if _, err := netlink.LinkByName(l); err == nil {
			left = append(left, "link "+l)
		}
	}
	for _, pid := range append([]int{info.Janitor}, info.Pids...) {
		if alive(pid) {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	return left
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func waitNoLeftovers(t *testing.T, info nodeInfo, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := leftovers(info)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("left behind after %v: %v", timeout, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseRemovesEverything: after Close no netns, link, cgroup, temp
// file, state file or process of the node remains, and Close is idempotent.
func TestCloseRemovesEverything(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	info, err := populate(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(leftovers(info)) == 0 {
		t.Fatal("leftovers() sees nothing of a live node")
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	waitNoLeftovers(t, info, 0)
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.AddPod(PodOptions{Name: "late"}); err == nil {
		t.Error("AddPod on a closed node succeeded")
	}
}

// startOwner runs runTestOwner in a child process and returns it with the
// node's description.
func startOwner(t *testing.T) (*exec.Cmd, nodeInfo) {
	t.Helper()
	testenv.RequireRoot(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envTestOwner+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadBytes('\n')
	if err != nil {
		t.Fatalf("node owner: %v", err)
	}
	var info nodeInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("node owner said %q: %v", line, err)
	}
	return cmd, info
}

// TestJanitorCleansAfterKill: a node owner killed with SIGKILL (no Close, no
// deferred code) leaves nothing behind: its janitor cleans up.
func TestJanitorCleansAfterKill(t *testing.T) {
	cmd, info := startOwner(t)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitNoLeftovers(t, info, 15*time.Second)
}

// TestSweepAfterJanitorDies: if the owner and its janitor both die, the
// leftovers stay until the next Sweep (which NewNode runs) removes them.
func TestSweepAfterJanitorDies(t *testing.T) {
	cmd, info := startOwner(t)
	if err := syscall.Kill(info.Janitor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for alive(info.Janitor) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(info.Manifest.Netns[0]); err != nil {
		// Nodes of other test packages running at the same time sweep
		// dead runs too (NewNode calls Sweep): one may have been first.
		t.Logf("leftovers already swept by a concurrent run: %v", err)
	}
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	// A concurrent sweep that holds the run's lock makes ours skip it;
	// it finishes the job within moments.
	waitNoLeftovers(t, info, 15*time.Second)
}
