package bpf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// errInjected is the failure moveStep injects.
var errInjected = errors.New("injected failure")

// killed is what moveStep panics with to stand for the installer's death
// at a step: none of the move's own error handling runs, and the test
// drops the node handle as the process's exit would.
type killed struct{ step string }

// An upgrade across layouts stopped after any step of a pod's move, by a
// failure at that step or by the installer's death there, never strips
// the pod: right after the stop the pod's cgroup has one sockops and one
// sock_create program, and the next pass finishes the move (or undoes it
// and moves again). Then the pod runs this state's programs, is listed
// whole by Pods, a connection made in its cgroup is paired and redirected,
// and nothing is left staged nor in the older state.
func TestUpgradeInterruptedAnywhere(t *testing.T) {
	steps := moveSteps(t)
	t.Logf("the move of a pod has %d steps: %q", len(steps), steps)
	for _, mode := range []string{"fail", "kill"} {
		for k := range steps {
			t.Run(fmt.Sprintf("%s-after-%d-%s", mode, k+1, steps[k]), func(t *testing.T) {
				upgradeStoppedAt(t, mode, k)
			})
		}
	}
}

// moveSteps runs one uninterrupted move and returns the names of its
// steps, in order.
func moveSteps(t *testing.T) []string {
	t.Helper()
	u := newInterruptedUpgrade(t)
	var steps []string
	setMoveStep(t, func(s string) error { steps = append(steps, s); return nil })
	if r, err := u.n.Upgrade(); err != nil || r.Moved != 1 {
		t.Fatalf("Upgrade = %+v, %v; want the pod moved", r, err)
	}
	if len(steps) == 0 {
		t.Fatal("the move reported no step to the test hook")
	}
	return steps
}

// interruptedUpgrade is a node with a pod attached under a state of an
// older layout ("v0-test") and the state of this layout beside it.
type interruptedUpgrade struct {
	opts Options
	old  *Node
	n    *Node
	cg   string
	cgID uint64
}

func newInterruptedUpgrade(t *testing.T) *interruptedUpgrade {
	t.Helper()
	u := &interruptedUpgrade{opts: Options{Root: upgradeRoot(t)}}
	old, err := OpenNode(Options{Root: u.opts.Root, layout: "v0-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { old.Close() })
	u.old, u.cg = old, newTestCgroup(t)
	if u.cgID, err = cgroupv2.ID(u.cg); err != nil {
		t.Fatal(err)
	}
	// TrustApp: the test's own sockets (uid 0) may receive redirected data.
	if err := old.AttachPod("p", u.cg, PodConfig{TrustApp: true}); err != nil {
		t.Fatal(err)
	}
	if u.n, err = OpenNode(u.opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.n.Close() })
	return u
}

func setMoveStep(t *testing.T, f func(string) error) {
	t.Helper()
	moveStep = f
	t.Cleanup(func() { moveStep = nil })
}

// upgradeStoppedAt stops a pod's move after step k (from 0) by mode
// ("fail" or "kill"), runs the next pass and checks the pod.
func upgradeStoppedAt(t *testing.T, mode string, k int) {
	u := newInterruptedUpgrade(t)
	calls := 0
	setMoveStep(t, func(s string) error {
		calls++
		if calls-1 != k {
			return nil
		}
		if mode == "kill" {
			panic(killed{s})
		}
		return fmt.Errorf("%s: %w", s, errInjected)
	})
	err := upgradeOrDie(u.n)
	var k2 killed
	switch {
	case mode == "kill" && !errors.As(err, &k2):
		t.Fatalf("the installer was not killed at step %d: Upgrade returned %v", k+1, err)
	case mode == "fail" && err != nil && !errors.Is(err, errInjected):
		t.Fatalf("Upgrade stopped at step %d: %v, want the injected failure", k+1, err)
	}
	t.Logf("first pass: %v", err)
	moveStep = nil
	u.wantPrograms(t, "right after the interruption", 0, 0)
	if mode == "kill" {
		// The process is gone: its successor opens the node afresh.
		u.n.Close()
		n, err := OpenNode(u.opts)
		if err != nil {
			t.Fatal(err)
		}
		u.n = n
	}

	r, err := u.n.Upgrade()
	if err != nil {
		t.Fatalf("next pass: %v", err)
	}
	t.Logf("next pass: %+v", r)
	u.wantPrograms(t, "after the next pass", progID(t, u.n.sockops), progID(t, u.n.sockCreate))
	pods, err := u.n.Pods()
	if err != nil {
		t.Fatalf("Pods after the next pass: %v", err)
	}
	if len(pods) != 1 || pods[0].ID != "p" || pods[0].CgroupID != u.cgID || pods[0].Broken != nil ||
		!pods[0].Config.TrustApp {
		t.Errorf("Pods after the next pass = %+v, want pod p whole, on cgroup %d, with its configuration", pods, u.cgID)
	}
	if ents, _ := os.ReadDir(filepath.Join(u.n.Dir(), stagingDir)); len(ents) != 0 {
		t.Errorf("left staged in %s: %v", filepath.Join(u.n.Dir(), stagingDir), ents)
	}
	if _, err := os.Stat(u.old.podDir("p")); err == nil {
		t.Errorf("pod still in the older state")
	}
	u.wantPaired(t)
}

// upgradeOrDie runs an upgrade pass and turns a killed panic into an
// error.
func upgradeOrDie(n *Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			k, ok := r.(killed)
			if !ok {
				panic(r)
			}
			err = k
		}
	}()
	_, err = n.Upgrade()
	return err
}

func (k killed) Error() string { return "killed after " + k.step }

// wantPrograms checks that the pod's cgroup runs exactly one sockops and
// one sock_create program of its own, the given ones unless 0, and, while
// the older state keeps a retiring link for it, the older sockops program
// after its own.
func (u *interruptedUpgrade) wantPrograms(t *testing.T, when string, sockops, sockCreate ebpf.ProgramID) {
	t.Helper()
	dir, err := os.Open(u.cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	retiring := filepath.Join(u.old.Dir(), retiringDir, "p")
	if _, err := os.Stat(retiring); err != nil {
		// Gone with the older state (or never made): bpffs drops a
		// removed pin's reference after an RCU grace period, so the
		// link may take a moment to detach.
		u.waitSockops(t, 1)
	}
	for _, a := range []struct {
		typ  ebpf.AttachType
		want ebpf.ProgramID
	}{{ebpf.AttachCGroupSockOps, sockops}, {ebpf.AttachCGroupInetSockCreate, sockCreate}} {
		q, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: a.typ})
		if err != nil {
			t.Fatalf("query the programs of the pod's cgroup: %v", err)
		}
		if _, err := os.Stat(retiring); err == nil && a.typ == ebpf.AttachCGroupSockOps {
			older := progID(t, u.old.sockops)
			if n := len(q.Programs); n != 2 || q.Programs[1].ID != older {
				t.Errorf("%s: the pod's cgroup runs sockops programs %+v, want its own and then the older state's %d (retiring link)",
					when, q.Programs, older)
				continue
			}
			q.Programs = q.Programs[:1]
		}
		switch {
		case len(q.Programs) != 1:
			t.Errorf("%s: %d %v programs on the pod's cgroup, want 1: %+v", when, len(q.Programs), a.typ, q.Programs)
		case a.want != 0 && q.Programs[0].ID != a.want:
			t.Errorf("%s: the pod's cgroup runs %v program %d, want this state's %d", when, a.typ, q.Programs[0].ID, a.want)
		}
	}
}

// waitSockops waits (up to 10 s) until the pod's cgroup runs n sockops
// programs.
func (u *interruptedUpgrade) waitSockops(t *testing.T, n int) {
	t.Helper()
	dir, err := os.Open(u.cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		q, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: ebpf.AttachCGroupSockOps})
		if err != nil || len(q.Programs) == n {
			return
		}
	}
}

// wantPaired makes a connection in the pod's cgroup (a child process of
// the test, pairHelper) and wants it paired and its bytes redirected by
// this state's programs.
func (u *interruptedUpgrade) wantPaired(t *testing.T) {
	t.Helper()
	before, err := u.n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.Open(u.cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestPairHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), envPairHelper+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("connection in the pod's cgroup: %v\n%s", err, out)
	}
	after, err := u.n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if d["connections_accepted"] < 1 || d["bytes_redirected"] == 0 {
		t.Errorf("the pod's connection was not accelerated: connections_accepted +%d, bytes_redirected +%d "+
			"(rejected: no peer +%d, no owner +%d)", d["connections_accepted"], d["bytes_redirected"],
			d["rejected_no_local_peer"], d["rejected_no_owner"])
	}
}

const envPairHelper = "MESH_ACCEL_TEST_PAIR_HELPER"

// TestPairHelper is the child process of wantPaired, run in a pod's
// cgroup: a connection to itself over loopback, 64 KiB each way once the
// pair is recorded (the server side is established when Accept returns).
// Run as a test of its own, it does nothing.
func TestPairHelper(t *testing.T) {
	if os.Getenv(envPairHelper) == "" {
		return
	}
	if err := pairHelper(); err != nil {
		t.Fatal(err)
	}
}

func pairHelper() error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // MPTCP's accepted sockets are never paired
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	return pairOver(ln)
}

// pairOver connects to ln and exchanges 64 KiB each way over the
// connection, checking the bytes.
func pairOver(ln net.Listener) error {
	var d net.Dialer
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		return err
	}
	defer s.Close()
	msg := bytes.Repeat([]byte("mesh-accel"), 6554)
	for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
		errc := make(chan error, 1)
		go func() { _, err := dir[0].Write(msg); errc <- err }()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(dir[1], got); err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if !bytes.Equal(got, msg) {
			return errors.New("the bytes read are not the bytes written")
		}
	}
	return nil
}

// A move killed after staging, whose pod an older release's plugin then
// deleted (it knows nothing of staging): the next pass removes what was
// staged, so that the deleted pod keeps no program.
func TestUpgradeRollsBackOrphanedStaging(t *testing.T) {
	u := newInterruptedUpgrade(t)
	setMoveStep(t, func(s string) error {
		if s == "stage "+linkSockops {
			panic(killed{s})
		}
		return nil
	})
	if err := upgradeOrDie(u.n); !errors.As(err, new(killed)) {
		t.Fatalf("Upgrade = %v, want killed", err)
	}
	moveStep = nil
	if err := os.RemoveAll(u.old.podDir("p")); err != nil { // the older plugin's DEL
		t.Fatal(err)
	}
	if _, err := u.n.Upgrade(); err != nil {
		t.Fatal(err)
	}
	u.wantNoPrograms(t)
	if pods, err := u.n.Pods(); err != nil || len(pods) != 0 {
		t.Errorf("Pods = %+v, %v; want none", pods, err)
	}
	if _, err := os.Stat(filepath.Join(u.n.Dir(), stagingDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging folder left: %v", err)
	}
}

// A pod whose state lost a link is listed with Broken, beside whole pods,
// and its DEL removes what is left.
func TestPodsReportsBrokenPod(t *testing.T) {
	u := newInterruptedUpgrade(t)
	n := u.old
	whole := newTestCgroup(t)
	if err := n.AttachPod("q", whole, PodConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(n.podDir("p"), linkSockops)); err != nil { // what issue 19 left
		t.Fatal(err)
	}
	pods, err := n.Pods()
	if err != nil {
		t.Fatalf("Pods with a broken pod: %v", err)
	}
	byID := map[string]PodInfo{}
	for _, p := range pods {
		byID[p.ID] = p
	}
	if p := byID["p"]; !errors.Is(p.Broken, ErrPodBroken) || p.CgroupID != u.cgID || !p.Config.TrustApp {
		t.Errorf("broken pod listed as %+v, want Broken, its cgroup (by its other link) and configuration", p)
	}
	if q := byID["q"]; q.Broken != nil || q.CgroupID == 0 {
		t.Errorf("whole pod listed as %+v", q)
	}
	if err := n.DetachPod("p"); err != nil {
		t.Fatal(err)
	}
	u.wantNoPrograms(t)
}

// wantNoPrograms checks that the pod's cgroup runs no program. The kernel
// frees an unpinned link in a work queue, so it waits a little; and a
// killed pass's open link handles are closed (by the garbage collector) as
// the process's exit would close them.
func (u *interruptedUpgrade) wantNoPrograms(t *testing.T) {
	t.Helper()
	dir, err := os.Open(u.cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		runtime.GC()
		left = left[:0]
		for _, typ := range []ebpf.AttachType{ebpf.AttachCGroupSockOps, ebpf.AttachCGroupInetSockCreate} {
			q, err := link.QueryPrograms(link.QueryOptions{Target: int(dir.Fd()), Attach: typ})
			if err != nil {
				t.Fatal(err)
			}
			if len(q.Programs) != 0 {
				left = append(left, fmt.Sprintf("%v: %+v", typ, q.Programs))
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) != 0 {
		t.Errorf("programs left on the pod's cgroup: %v", left)
	}
}
