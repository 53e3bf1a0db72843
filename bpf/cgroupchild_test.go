package bpf

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// cgroupChild is this test binary run as a helper process (one test of
// its own) in a pod's cgroup, so that its sockets belong to the pod. It
// talks in lines: it announces a step on stdout, waits for "go" on stdin,
// and prints its result before it exits.
type cgroupChild struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.Writer
	out    *bufio.Reader
	stderr strings.Builder
}

// startCgroupChild starts test (a helper test's name) in cgroup cg with
// env added, and waits for its first line, want.
func startCgroupChild(t *testing.T, cg, test, want string, env ...string) *cgroupChild {
	t.Helper()
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	c := &cgroupChild{name: test, cmd: exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")}
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	c.cmd.Stderr = &c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); _ = c.cmd.Wait() })
	c.out = bufio.NewReader(stdout)
	if line, err := c.out.ReadString('\n'); err != nil || line != want+"\n" {
		rest, _ := c.out.ReadString(0)
		t.Fatalf("%s: %q, %v\n%s%s", test, line, err, rest, c.stderr.String())
	}
	return c
}

// proceed tells the child to go on and returns what it printed until it
// exited successfully.
func (c *cgroupChild) proceed(t *testing.T) string {
	t.Helper()
	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	rest, _ := c.out.ReadString(0)
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("%s: %v\n%s%s", c.name, err, rest, c.stderr.String())
	}
	return rest
}

// pairedUnderOlder opens the state of o (the older one of an upgrade test:
// the caller closes it), attaches pod "p" in a new test cgroup, and starts
// the child test helper there, which pairs one connection; it fails the
// test unless that connection was paired under this state. It returns the
// state, the child and the state's counters once paired.
func pairedUnderOlder(t *testing.T, o Options, helper, env string) (*Node, *cgroupChild, Counters) {
	t.Helper()
	old, err := OpenNode(o)
	if err != nil {
		t.Fatal(err)
	}
	cg := newTestCgroup(t)
	if err := old.AttachPod("p", cg, PodConfig{TrustApp: true}); err != nil {
		old.Close()
		t.Fatal(err)
	}
	before, err := old.Counters()
	if err != nil {
		old.Close()
		t.Fatal(err)
	}
	child := startCgroupChild(t, cg, helper, "paired", env+"=1")
	paired, err := old.Counters()
	if err != nil {
		old.Close()
		t.Fatal(err)
	}
	if d := paired.Sub(before); d["connections_accepted"] != 1 {
		old.Close()
		t.Fatalf("the connection was not paired under the older state: %v", d)
	}
	return old, child, paired
}
