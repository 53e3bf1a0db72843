package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// sharedAddr is the address both pods of the isolation tests hold, as pods
// on overlapping secondary networks can.
const sharedAddr = "10.200.0.1"

// envIso makes the test binary one of the isolation roles ([isoSpec] as
// JSON).
const envIso = "MESH_ACCEL_TEST_ISO"

type isoSpec struct {
	Role     string // "server", "victim", "listener", "intruder", "reuse", "echo", "keeper" or "holder"
	Addr     string // listen or connect address
	Source   string // client: local address to bind
	Defer    bool   // listener: TCP_DEFER_ACCEPT
	Duration time.Duration
	Count    int    // holder: connections (holderConns when zero)
	Silent   bool   // holder: send nothing (no acknowledged data)
	Userns   bool   // run the role in a user namespace (inUserns)
	Cgroup   string // move into this cgroup (directory) first
	// reuse: the second client is another process's (role "echo"): print
	// "ready" after the reset and wait for a byte on stdin before reading.
	External bool
}

// isoResult is what a role prints.
type isoResult struct {
	Sent, Received int64
	InOrder        bool
	Reset          bool // the reuse role saw ECONNRESET after the data
	roleError
}

func isoRole(js string) {
	var spec isoSpec
	if err := json.Unmarshal([]byte(js), &spec); err == nil && spec.Userns {
		if err := runInUserns(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	roleMain(js, func(spec isoSpec, res *isoResult) error {
		if spec.Cgroup != "" {
			if err := os.WriteFile(filepath.Join(spec.Cgroup, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
				return err
			}
		}
		return spec.run(res)
	})
}

// reuseControl sets SO_REUSEADDR, so that a client can bind an address
// and port that an earlier socket holds.
func reuseControl(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	return serr
}

func (s isoSpec) dial() (*net.TCPConn, error) {
	src, err := net.ResolveTCPAddr("tcp", s.Source)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{LocalAddr: src, Control: reuseControl}
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

func (s isoSpec) run(res *isoResult) error {
	switch s.Role {
	case "server", "listener":
		// server: streams 4 KiB every 2 ms for Duration to each client;
		// listener: reads and discards.
		deferSec := 0
		if s.Defer {
			deferSec = 30
		}
		c, err := acceptOne(s.Addr, deferSec)
		if err != nil {
			return err
		}
		if s.Role == "listener" {
			n, _ := io.Copy(io.Discard, c)
			res.Received = n
			return nil
		}
		st, buf := sim.NewStream(5), make([]byte, 4096)
		for end := time.Now().Add(s.Duration); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
			st.Read(buf)
			n, err := c.Write(buf)
			res.Sent += int64(n)
			if err != nil {
				return err
			}
		}
		return c.(*net.TCPConn).CloseWrite()
	case "victim":
		c, err := s.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		res.Received, res.InOrder, err = readStream(c, 5)
		return err
	case "intruder":
		// Connects from the same address and port, sends nothing, and
		// reports whatever arrives.
		c, err := s.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(s.Duration))
		n, _ := io.Copy(io.Discard, c)
		res.Received = n
		return nil
	case "reuse":
		return s.reuse(res)
	case "echo":
		return s.echoOnce()
	case "keeper":
		return s.keep()
	case "holder":
		return s.hold()
	}
	return fmt.Errorf("unknown role %q", s.Role)
}

// readStream reads c to EOF and checks it is the stream of seed.
func readStream(c io.Reader, seed int64) (int64, bool, error) {
	want, buf, exp := sim.NewStream(seed), make([]byte, 64<<10), make([]byte, 64<<10)
	var n int64
	ok := true
	for {
		k, err := c.Read(buf)
		want.Read(exp[:k])
		ok = ok && string(buf[:k]) == string(exp[:k])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, ok, nil
		}
		if err != nil {
			return n, ok, err
		}
	}
}

// reuse: a client asks the app for a stream followed by a reset (OpReset)
// and does not read; once the reset has arrived, a second client binds the
// same address and port and connects to the same server (the same tuple,
// in the same namespace). Then the first reads: it must get every byte of
// the stream, then the reset.
func (s isoSpec) reuse(res *isoResult) error {
	const n = 1 << 20
	c1, err := s.dial()
	if err != nil {
		return err
	}
	defer c1.Close()
	req := binary.BigEndian.AppendUint64([]byte{sim.OpReset}, n)
	if _, err := c1.Write(req); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond) // the stream and the reset arrive
	if s.External {
		fmt.Println("ready")
		if _, err := io.ReadFull(os.Stdin, make([]byte, 1)); err != nil {
			return fmt.Errorf("wait for the second client: %w", err)
		}
	} else if err := s.echoOnce(); err != nil {
		return err
	}
	res.Received, res.InOrder, err = readStream(c1, sim.ResetSeed)
	res.Reset = errors.Is(err, unix.ECONNRESET)
	if err != nil && !res.Reset {
		return err
	}
	return nil
}

// echoOnce connects on the spec's tuple (a second client on it), has one
// byte echoed and closes.
func (s isoSpec) echoOnce() error {
	c, err := s.dial()
	if err != nil {
		return fmt.Errorf("second client on the same tuple: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{sim.OpEcho, 'x'}); err != nil {
		return err
	}
	_ = c.CloseWrite()
	echo, _ := io.ReadAll(c)
	if string(echo) != "x" {
		return fmt.Errorf("second client got echo %q", echo)
	}
	return nil
}

// runIso runs a role in pod p and returns it (ready when it listens).
func runIso(t *testing.T, ctx context.Context, p *sim.Pod, spec isoSpec) *sim.Proc {
	t.Helper()
	ready := spec.Role == "server" || spec.Role == "listener" || spec.Role == "keeper" || spec.Role == "holder"
	return startRole(t, ctx, p, envIso, spec, ready)
}

func isoWait(t *testing.T, p *sim.Proc) isoResult { return waitRole[isoResult](t, p) }

// addSharedAddr gives the pods' loopback the shared address.
func addSharedAddr(t *testing.T, pods ...*sim.Pod) {
	t.Helper()
	for _, p := range pods {
		if out, err := runCmd("nsenter", "--net="+p.Netns, "ip", "addr", "add", sharedAddr+"/32", "dev", "lo"); err != nil {
			t.Fatalf("add %s in pod %s: %v: %s", sharedAddr, p.Name, err, out)
		}
	}
}

// Two accelerated pods hold the same address. In pod A a server streams to
// its client (10.200.0.1:40000 -> 10.200.0.1:9080). Pod B binds a client to
// 10.200.0.1:40000 and connects to its own listener on 9080 (with
// TCP_DEFER_ACCEPT, and plain). The victim gets every byte, in order; the
// intruder gets none.
func TestSameAddressOtherPod(t *testing.T) {
	e := newEnv(t, optsDefault)
	for _, deferAccept := range []bool{true, false} {
		t.Run(fmt.Sprintf("defer=%v", deferAccept), func(t *testing.T) {
			e.t = t
			a := e.pod(fmt.Sprintf("a%v", deferAccept), false, &trustedAll)
			b := e.pod(fmt.Sprintf("b%v", deferAccept), false, &trustedAll)
			addSharedAddr(t, a, b)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			before := e.counters()
			dst, src := sharedAddr+":9080", sharedAddr+":40000"
			srv := runIso(t, ctx, a, isoSpec{Role: "server", Addr: dst, Duration: 2 * time.Second})
			victim := runIso(t, ctx, a, isoSpec{Role: "victim", Addr: dst, Source: src})
			time.Sleep(300 * time.Millisecond)
			ln := runIso(t, ctx, b, isoSpec{Role: "listener", Addr: dst, Defer: deferAccept})
			intruder := runIso(t, ctx, b, isoSpec{Role: "intruder", Addr: dst, Source: src, Duration: 2 * time.Second})
			sent, got, stolen := isoWait(t, srv), isoWait(t, victim), isoWait(t, intruder)
			_ = ln.Kill()
			t.Logf("server sent %d, victim received %d (in order %v), intruder received %d", sent.Sent, got.Received,
				got.InOrder, stolen.Received)
			if sent.Error != "" || got.Error != "" || stolen.Error != "" {
				t.Fatalf("errors: server %q, victim %q, intruder %q", sent.Error, got.Error, stolen.Error)
			}
			if got.Received != sent.Sent || !got.InOrder || sent.Sent == 0 {
				t.Errorf("victim received %d bytes (in order %v) of %d", got.Received, got.InOrder, sent.Sent)
			}
			if stolen.Received != 0 {
				t.Errorf("intruder received %d bytes", stolen.Received)
			}
			e.waitNoConns()
			wantPositive(t, e.counters().Sub(before), "bytes_redirected")
		})
	}
}

// A connection reset while its reader has not read its redirected data,
// then a new connection on the same tuple in the same pod: the first
// reader still gets every byte that was redirected to it (flow control
// carries the rest on the stack once the reader holds about its receive
// buffer, and the reset discards what the stack had not sent, as without
// acceleration), in order, then the reset; the new connection is not
// accelerated (rejected_tuple_in_use).
func TestTupleReuseAfterReset(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	addSharedAddr(t, a)
	ctx := roleCtx(t)
	before := e.counters()
	res := isoWait(t, runIso(t, ctx, a, isoSpec{Role: "reuse", Addr: sharedAddr + ":8080", Source: sharedAddr + ":40000"}))
	checkReuse(t, e, before, res, "rejected_tuple_in_use")
}

// The same, the second connection's socket owned by another uid, which the
// pod does not trust to read: it registers without joining a socket map,
// so its close callbacks run, and the entries they find under its tuple
// are the first socket's. They must stay, with the first reader's unread
// redirected bytes.
func TestTupleReuseAfterResetUntrusted(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &bpf.PodConfig{Rules: &rules.Set{}, SidecarUID: 1000})
	addSharedAddr(t, a)
	ctx := roleCtx(t)
	before := e.counters()
	spec := isoSpec{Role: "reuse", Addr: sharedAddr + ":8080", Source: sharedAddr + ":40000", External: true}
	js, _ := json.Marshal(spec)
	release, held := io.Pipe()
	first, err := a.Start(ctx, sim.ProcSpec{Argv: []string{a.Exe()}, UID: 1000, GID: 1000,
		Env: []string{envIso + "=" + string(js)}, Stdin: release, Ready: "ready"})
	if err != nil {
		t.Fatal(err)
	}
	spec.Role = "echo"
	js, _ = json.Marshal(spec)
	second, err := a.Start(ctx, sim.ProcSpec{Argv: []string{a.Exe()}, UID: 1001, GID: 1001,
		Env: []string{envIso + "=" + string(js)}})
	if err != nil {
		t.Fatal(err)
	}
	if r := isoWait(t, second); r.Error != "" {
		t.Fatalf("second client: %s", r.Error)
	}
	_, _ = held.Write([]byte{1})
	_ = held.Close()
	checkReuse(t, e, before, isoWait(t, first), "rejected_untrusted_readers")
}

// checkReuse checks the first client of the reuse role: a prefix of its
// stream in order, then the reset, and at least every byte redirected to it.
func checkReuse(t *testing.T, e *env, before bpf.Counters, res isoResult, second bpf.Counter) {
	t.Helper()
	if res.Error != "" || res.Received == 0 || res.Received > 1<<20 || !res.InOrder || !res.Reset {
		t.Fatalf("first client: %+v, want a prefix of 1 MiB in order, then a reset", res)
	}
	e.waitNoConns()
	c := e.counters().Sub(before)
	wantPositive(t, c, "bytes_redirected", second)
	if uint64(res.Received) < c["bytes_redirected"] {
		t.Errorf("first client received %d bytes, but %d were redirected to it: the reset lost redirected bytes",
			res.Received, c["bytes_redirected"])
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// inUserns runs spec's role in pod p inside a new user namespace that maps
// the pod's ids 0..65535 to the host's 100000..165535, as uid and gid 1337
// (host 101337): a pod with hostUsers: false.
func inUserns(t *testing.T, ctx context.Context, p *sim.Pod, spec isoSpec) *sim.Proc {
	t.Helper()
	spec.Userns = true
	js, _ := json.Marshal(spec)
	proc, err := p.Start(ctx, sim.ProcSpec{Argv: []string{p.Exe()}, Env: []string{envIso + "=" + string(js)}, Ready: "ready"})
	if err != nil {
		t.Fatal(err)
	}
	return proc
}

// runInUserns re-runs the role in a new user namespace (see inUserns); the
// parent, root in the pod, writes the id maps.
func runInUserns(spec isoSpec) error {
	spec.Userns = false
	js, _ := json.Marshal(spec)
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = append(os.Environ(), envIso+"="+string(js))
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	ids := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, UidMappings: ids, GidMappings: ids,
		Credential: &syscall.Credential{Uid: 1337, Gid: 1337, NoSetGroups: true}, Pdeathsig: syscall.SIGKILL}
	return cmd.Run()
}

// In user-namespaced pods the ids the rules and the sidecar's trust name
// are those the pod sees: uid 1337 inside (101337 on the host) matches the
// default rules' --uid-owner 1337 and is the trusted sidecar uid.
func TestUserNamespacedPods(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &oneWayCfg)
	b := e.pod("b", false, &oneWayCfg)
	ctx := roleCtx(t)
	before := e.counters()
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	ln := inUserns(t, ctx, b, isoSpec{Role: "listener", Addr: addr})
	holder := inUserns(t, ctx, a, isoSpec{Role: "holder", Addr: addr, Count: 1})
	_ = holder.Kill()
	_ = ln.Wait()
	e.waitNoConns()
	c := e.counters().Sub(before)
	want(t, c, map[string]uint64{"connections_accepted": 1, "directions_redirected": 2, "rejected_rules": 0})
}

// A socket belongs to the nearest attached cgroup of its creator: a pod
// attached inside another attached cgroup is judged by its own
// configuration, not by the outer one's.
func TestNearestPodCgroup(t *testing.T) {
	e := newEnv(t, optsDefault)
	disabled := trustedAll
	disabled.Disabled = true
	outer := e.pod("outer", false, &disabled)
	b := e.pod("b", false, &trustedAll)
	inner := filepath.Join(outer.CgroupDir, "inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := e.node.AttachPod("inner", inner, trustedAll); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.node.DetachPod("inner") })
	ctx := roleCtx(t)
	before := e.counters()
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	ln := runIso(t, ctx, b, isoSpec{Role: "listener", Addr: addr})
	js, _ := json.Marshal(isoSpec{Role: "holder", Addr: addr, Count: 1, Cgroup: inner})
	holder, err := outer.Start(ctx, sim.ProcSpec{Argv: []string{outer.Exe()}, Env: []string{envIso + "=" + string(js)},
		Ready: "ready"})
	if err != nil {
		t.Fatal(err)
	}
	_ = holder.Kill()
	_ = ln.Wait()
	e.waitNoConns()
	want(t, e.counters().Sub(before), map[string]uint64{"connections_accepted": 1, "rejected_disabled": 0})
}

// ::6, Istio's IPv6 inbound source, is on every pod's loopback like
// 127.0.0.6: a connection from [::6]:40000 in one pod (its registration
// pending: the listener defers the accept, the client sends nothing) does
// not make the same endpoint ambiguous in another pod.
func TestInboundSourceSixPerPod(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	ctx := roleCtx(t)
	before := e.counters()
	var clients []*sim.Proc
	for _, p := range []*sim.Pod{a, b} {
		runIso(t, ctx, p, isoSpec{Role: "listener", Addr: "[::1]:9090", Defer: p == a})
		clients = append(clients, runIso(t, ctx, p, isoSpec{Role: "intruder", Addr: "[::1]:9090", Source: "[::6]:40000",
			Duration: time.Second}))
	}
	for _, c := range clients {
		if res := isoWait(t, c); res.Error != "" {
			t.Fatalf("client: %s", res.Error)
		}
	}
	e.waitNoConns()
	c := e.counters().Sub(before)
	want(t, c, map[string]uint64{"rejected_ambiguous": 0})
	if c["connections_accepted"] < 1 {
		t.Errorf("pod b's connection not accelerated: %v", c)
	}
}
