package bpf

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// The kernel's statistics of the node's programs: a connection made from a
// pod's cgroup runs sock_create once for its socket and sockops for its
// callbacks, and their time is counted.
func TestProgramStats(t *testing.T) {
	root := upgradeRoot(t)
	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	stats, err := EnableStats()
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	cg := newTestCgroup(t)
	if err := n.AttachPod("p", cg, PodConfig{}); err != nil {
		t.Fatal(err)
	}
	defer n.DetachPod("p")
	before := statsByName(t, n)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	// A process started in the pod's cgroup connects once and exits.
	cmd := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", ln.Addr().(*net.TCPAddr).Port))
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connect from the pod's cgroup: %v: %s", err, out)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	after := statsByName(t, n)
	if d := after["sock_create"].Runs - before["sock_create"].Runs; d != 1 {
		t.Errorf("sock_create ran %d times for one socket, want 1", d)
	}
	if d := after["sockops"].Runs - before["sockops"].Runs; d < 2 {
		t.Errorf("sockops ran %d times for one connection, want at least 2 (connect, established)", d)
	}
	for _, name := range []string{"sock_create", "sockops"} {
		if after[name].Runtime <= before[name].Runtime {
			t.Errorf("%s: run time %v -> %v, want it to grow", name, before[name].Runtime, after[name].Runtime)
		}
	}
	if _, ok := after["sk_msg"]; !ok {
		t.Errorf("no statistics for sk_msg: %v", after)
	}
}

func statsByName(t *testing.T, n *Node) map[string]ProgramStat {
	t.Helper()
	s, err := n.ProgramStats()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ProgramStat{}
	for _, p := range s {
		m[p.Name] = p
	}
	return m
}
