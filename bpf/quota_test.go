package bpf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/testenv"
)

// The defaults: every pod is guaranteed 128 entries (64 accelerated
// connections) of 65,536, kept for 256 pods, and the other half of the maps
// is the shared pool. Options change them; nothing can reserve more than
// the maps hold.
func TestShareFor(t *testing.T) {
	for _, tc := range []struct {
		capacity, share, pods uint32
		want                  meshShareState
	}{
		{DefaultMapSize, 0, 0, meshShareState{Guaranteed: 128, Pods: 256, Pool: 32768, Capacity: DefaultMapSize}},
		{1024, 16, 16, meshShareState{Guaranteed: 16, Pods: 16, Pool: 768, Capacity: 1024}},
		{1024, 0, 0, meshShareState{Guaranteed: 2, Pods: 256, Pool: 512, Capacity: 1024}},
		{1024, 100, 16, meshShareState{Guaranteed: 64, Pods: 16, Pool: 0, Capacity: 1024}},
		{128, 0, 0, meshShareState{Guaranteed: 2, Pods: 32, Pool: 64, Capacity: 128}},
		{8, 0, 0, meshShareState{Guaranteed: 2, Pods: 2, Pool: 4, Capacity: 8}},
		{1024, 0, 1000, meshShareState{Guaranteed: 2, Pods: 512, Pool: 0, Capacity: 1024}},
	} {
		got := shareFor(tc.capacity, tc.share, tc.pods)
		if got != tc.want {
			t.Errorf("shareFor(%d, %d, %d) = %+v, want %+v", tc.capacity, tc.share, tc.pods, got, tc.want)
		}
		if int64(got.Pods)*int64(got.Guaranteed)+int64(got.Pool) > int64(tc.capacity) {
			t.Errorf("shareFor(%d, %d, %d) = %+v: reserves more than the maps hold", tc.capacity, tc.share, tc.pods, got)
		}
	}
}

// The usage word: the count under its bias, the generation above it;
// adding and giving back moves the generation by the entries changed, and
// a count below zero does not touch it.
func TestUsageWord(t *testing.T) {
	w := newUsageWord()
	if usedOf(w) != 0 || genOf(w) != 0 {
		t.Fatalf("new word %#x: used %d, gen %d", w, usedOf(w), genOf(w))
	}
	add := func(w uint64, n int64) uint64 {
		mag := n
		if mag < 0 {
			mag = -mag
		}
		return w + uint64(mag)<<usageGenShift + uint64(n)
	}
	w = add(add(add(w, 2), -1), -3) // 2, 1, -2
	if usedOf(w) != -2 || genOf(w) != 6 {
		t.Errorf("after +2 -1 -3: used %d, gen %d; want -2, 6", usedOf(w), genOf(w))
	}
}

const envQuotaHelper = "MESH_ACCEL_TEST_QUOTA_HELPER"

// TestQuotaHelper is a pod's process for the quota tests, run in the pod's
// cgroup: it reads commands on stdin, one a line, and answers each with a
// line on stdout ("ok ..." or "error: ..."). Run as a test of its own, it
// does nothing.
//
//	dial ADDR N   open N connections to ADDR and keep them, sending nothing
//	echo          on every connection dialed: write 4 KiB, read them back
//	listen        listen on 127.0.0.1 and keep what it accepts; answers the address
//	self N        N connections to itself on 127.0.0.2, a byte each way on each (pairs)
//	unread N      on every connection accepted by self: write N bytes, then reset it (SO_LINGER 0)
//	write N       on every connection accepted by self: write N bytes
//	cookie        the socket cookie of the first connection dialed by self
//	readall       on every connection dialed by self: read to the end; answers the bytes read
//	defer         a connection to a listener with TCP_DEFER_ACCEPT (the accepting side is established by the first data)
//	deferdata     send 64 KiB on it, read them back through the accepted side
//	close         close every connection and listener
func TestQuotaHelper(t *testing.T) {
	if os.Getenv(envQuotaHelper) == "" {
		return
	}
	var h quotaHelper
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		reply, err := h.do(strings.Fields(in.Text()))
		if err != nil {
			reply = "error: " + err.Error()
		}
		fmt.Println(reply)
	}
}

type quotaHelper struct {
	dialed, self, accepted []net.Conn
	listeners              []net.Listener
	mu                     sync.Mutex // accepted
	deferClient            net.Conn
	deferLn                net.Listener
}

func tcpDialer() *net.Dialer {
	d := &net.Dialer{}
	d.SetMultipathTCP(false)
	return d
}

func tcpListen(control func(network, address string, c syscall.RawConn) error) (net.Listener, error) {
	return tcpListenOn("127.0.0.1", control)
}

func tcpListenOn(ip string, control func(network, address string, c syscall.RawConn) error) (net.Listener, error) {
	lc := net.ListenConfig{Control: control}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp4", ip+":0")
}

func (h *quotaHelper) do(args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("no command")
	}
	count := func() (int, error) { return strconv.Atoi(args[len(args)-1]) }
	switch args[0] {
	case "dial":
		n, err := count()
		if err != nil {
			return "", err
		}
		for i := 0; i < n; i++ {
			c, err := tcpDialer().Dial("tcp4", args[1])
			if err != nil {
				return "", fmt.Errorf("connection %d: %w", i, err)
			}
			h.dialed = append(h.dialed, c)
		}
		return fmt.Sprintf("ok %d", n), nil
	case "echo":
		out := bytes.Repeat([]byte("0123456789abcdef"), 256)
		back := make([]byte, len(out))
		for i, c := range h.dialed {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(out); err != nil {
				return "", fmt.Errorf("connection %d: %w", i, err)
			}
			if _, err := io.ReadFull(c, back); err != nil || !bytes.Equal(back, out) {
				return "", fmt.Errorf("connection %d: echo differs (%v)", i, err)
			}
		}
		return fmt.Sprintf("ok %d", len(h.dialed)), nil
	case "listen":
		ln, err := tcpListen(nil)
		if err != nil {
			return "", err
		}
		h.listeners = append(h.listeners, ln)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				h.mu.Lock()
				h.accepted = append(h.accepted, c)
				h.mu.Unlock()
			}
		}()
		return "ok " + ln.Addr().String(), nil
	case "self":
		n, err := count()
		if err != nil {
			return "", err
		}
		// On 127.0.0.2, from 127.0.0.2: all the tests' pods share the
		// host's network namespace, and a connecting socket of another
		// pod on 127.0.0.1 may share a local port (rejected_ambiguous).
		ln, err := tcpListenOn("127.0.0.2", nil)
		if err != nil {
			return "", err
		}
		defer ln.Close()
		d := tcpDialer()
		d.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
		one := make([]byte, 1)
		for i := 0; i < n; i++ {
			c, err := d.Dial("tcp4", ln.Addr().String())
			if err != nil {
				return "", err
			}
			s, err := ln.Accept()
			if err != nil {
				return "", err
			}
			h.dialed, h.self = append(h.dialed, c), append(h.self, s)
			for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
				if _, err := dir[0].Write(one); err != nil {
					return "", err
				}
				if _, err := io.ReadFull(dir[1], one); err != nil {
					return "", err
				}
			}
		}
		return fmt.Sprintf("ok %d", n), nil
	case "unread":
		n, err := count()
		if err != nil {
			return "", err
		}
		for _, s := range h.self {
			if n > 0 {
				if _, err := s.Write(bytes.Repeat([]byte{'x'}, n)); err != nil {
					return "", err
				}
			}
			_ = s.(*net.TCPConn).SetLinger(0)
			_ = s.Close()
		}
		h.self = nil
		return "ok", nil
	case "write":
		n, err := count()
		if err != nil {
			return "", err
		}
		for _, s := range h.self {
			if _, err := s.Write(bytes.Repeat([]byte{'x'}, n)); err != nil {
				return "", err
			}
		}
		return "ok", nil
	case "cookie":
		if len(h.dialed) == 0 {
			return "", errors.New("no connection dialed by self")
		}
		rc, err := h.dialed[0].(*net.TCPConn).SyscallConn()
		if err != nil {
			return "", err
		}
		var cookie uint64
		var serr error
		if err := rc.Control(func(fd uintptr) {
			cookie, serr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
		}); err != nil {
			return "", err
		}
		return fmt.Sprintf("ok %d", cookie), serr
	case "readall":
		total := 0
		for _, c := range h.dialed {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			b, _ := io.ReadAll(c) // ends with the reset
			total += len(b)
		}
		return fmt.Sprintf("ok %d", total), nil
	case "defer":
		ln, err := tcpListen(func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 60)
			})
			return errors.Join(err, serr)
		})
		if err != nil {
			return "", err
		}
		c, err := tcpDialer().Dial("tcp4", ln.Addr().String())
		if err != nil {
			return "", err
		}
		h.deferLn, h.deferClient = ln, c
		return "ok", nil
	case "deferdata":
		out := bytes.Repeat([]byte("deferred"), 8192)
		go func() { _, _ = h.deferClient.Write(out) }()
		s, err := h.deferLn.Accept()
		if err != nil {
			return "", err
		}
		defer s.Close()
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		_ = h.deferClient.SetDeadline(time.Now().Add(10 * time.Second))
		got := make([]byte, len(out))
		if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, out) {
			return "", fmt.Errorf("the accepted side read other bytes (%v)", err)
		}
		go func() { _, _ = s.Write(got) }()
		back := make([]byte, len(out))
		if _, err := io.ReadFull(h.deferClient, back); err != nil || !bytes.Equal(back, out) {
			return "", fmt.Errorf("the connecting side read other bytes (%v)", err)
		}
		return fmt.Sprintf("ok %d", 2*len(out)), nil
	case "close":
		h.mu.Lock()
		all := append(append(append([]net.Conn{}, h.dialed...), h.self...), h.accepted...)
		h.dialed, h.self, h.accepted = nil, nil, nil
		h.mu.Unlock()
		for _, c := range all {
			_ = c.Close()
		}
		for _, ln := range h.listeners {
			_ = ln.Close()
		}
		h.listeners = nil
		if h.deferClient != nil {
			_ = h.deferClient.Close()
			_ = h.deferLn.Close()
			h.deferClient, h.deferLn = nil, nil
		}
		return "ok", nil
	}
	return "", fmt.Errorf("unknown command %q", args[0])
}

// quotaPod is a TestQuotaHelper process in a pod's cgroup.
type quotaPod struct {
	name   string
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *testenv.SyncBuffer
}

// startQuotaPod starts the helper in cgroup cg; it ends with the test.
func startQuotaPod(t *testing.T, name, cg string) *quotaPod {
	t.Helper()
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestQuotaHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), envQuotaHelper+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	p := &quotaPod{name: name, stderr: &testenv.SyncBuffer{}}
	if p.in, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewReader(stdout)
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.in.Close() // the helper ends at EOF
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// do sends a command and returns the helper's answer after "ok".
func (p *quotaPod) do(t *testing.T, format string, args ...any) string {
	t.Helper()
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		t.Fatalf("pod %s: %s: %v", p.name, cmd, err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ok") {
		rest, _ := p.out.ReadString(0)
		t.Fatalf("pod %s: %s: %q %v\n%s%s", p.name, cmd, line, err, rest, p.stderr.String())
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "ok"))
}

// echoListener listens on 127.0.0.1 in the test's own process, outside
// every attached pod, and echoes what it receives: connections to it are
// never paired (as to a peer on another node).
func echoListener(t *testing.T) string {
	t.Helper()
	ln, err := tcpListen(nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// testNode opens fresh node state for a test, removed at its end.
func testNode(t *testing.T, o Options) *Node {
	t.Helper()
	o.Root = upgradeRoot(t)
	n, err := OpenNode(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
	return n
}

// attachTestPod attaches a pod on a new cgroup and starts its process.
func attachTestPod(t *testing.T, n *Node, name string, cfg PodConfig) (*quotaPod, uint64) {
	t.Helper()
	cg := newTestCgroup(t)
	if err := n.AttachPod(name, cg, cfg); err != nil {
		t.Fatal(err)
	}
	id, err := n.podCgroupID(name)
	if err != nil {
		t.Fatal(err)
	}
	return startQuotaPod(t, name, cg), id
}

// waitFor polls what until ok accepts it (10 s).
func waitFor[T any](t *testing.T, what func() (T, error), ok func(T) bool) T {
	t.Helper()
	var (
		v   T
		err error
	)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v, err = what(); err == nil && ok(v) {
			return v
		}
	}
	t.Fatalf("still %+v (%v) after 10 s", v, err)
	return v
}

func counters(t *testing.T, n *Node) Counters {
	t.Helper()
	c, err := n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The attack of issue 19: 8 attached pods each open their quota of idle
// connections that never send (to a peer their node does not accelerate,
// so that their registrations are never consumed). The maps are small
// (1,024 entries, quota 128 a pod, an eighth as by default) so that 8 such
// pods would fill them. Another attached pod must still be accelerated:
// the attackers get their guaranteed share and, beyond it, only what the
// shared pool holds; the rest are refused (rejected_shared_pool), and the
// maps keep room for every other pod's guaranteed share.
func TestFairShareUnderIdleAttack(t *testing.T) {
	const (
		mapSize   = 1024
		attackers = 8
		quota     = mapSize / 8
		share     = 16
		pods      = 16
	)
	n := testNode(t, Options{MapSize: mapSize, GuaranteedShare: share, GuaranteedPods: pods})
	addr := echoListener(t)
	before := counters(t, n)
	var ids []uint64
	for i := range attackers {
		p, id := attachTestPod(t, n, fmt.Sprintf("attacker-%d", i), PodConfig{TrustApp: true, Quota: quota})
		p.do(t, "dial %s %d", addr, quota)
		ids = append(ids, id)
	}
	u, err := n.Usage()
	if err != nil {
		t.Fatal(err)
	}
	mid := counters(t, n).Sub(before)
	var held int64
	for _, id := range ids {
		e := n.podUsage(id)
		if e > quota {
			t.Errorf("attacker (cgroup %d) holds %d entries, quota %d", id, e, quota)
		}
		held += e
	}
	t.Logf("attackers hold %d entries (%d registrations pending, %d sockets); share %+v; counters %v",
		held, u.Pending, u.Sockets, u.Share, mid)
	if max := int64(attackers*share + mapSize - pods*share); held > max {
		t.Errorf("the attackers hold %d entries, more than their guaranteed shares and the pool (%d)", held, max)
	}
	if mid["rejected_shared_pool"] == 0 {
		t.Errorf("no connection of the attackers was refused for the shared pool: %v", mid)
	}

	victim, vid := attachTestPod(t, n, "victim", PodConfig{TrustApp: true})
	victim.do(t, "self 4")
	after := counters(t, n).Sub(before)
	accepted := after["connections_accepted"] - mid["connections_accepted"]
	full := after["fallback_map_full"] - mid["fallback_map_full"]
	if accepted != 4 || full != 0 {
		t.Errorf("the victim pod's connections: %d of 4 accelerated, %d map updates failed (maps full); counters %v",
			accepted, full, after)
	}
	if got := n.podUsage(vid); got != 8 {
		t.Errorf("the victim holds %d entries, want 8 (4 pairs)", got)
	}
	s, err := n.Share()
	if err != nil {
		t.Fatal(err)
	}
	if s.Borrowed > int64(s.Pool) {
		t.Errorf("borrowed %d entries of a pool of %d", s.Borrowed, s.Pool)
	}
}

// A registration that waits longer than the TTL for a local peer (here:
// idle connections to a peer the node does not accelerate, which never
// send) is released by the sweep and counted: it leaves sock_helper_map
// and its socket the socket maps, its pod gets the entry back, and the
// connection carries its bytes on the stack, whole.
func TestIdleRegistrationsAgeOut(t *testing.T) {
	const conns, ttl = 50, 2 * time.Second
	n := testNode(t, Options{MapSize: 1024, RegistrationTTL: ttl})
	addr := echoListener(t)
	p, id := attachTestPod(t, n, "idle", PodConfig{TrustApp: true})
	p.do(t, "dial %s %d", addr, conns)
	u := waitFor(t, n.Usage, func(u Usage) bool { return u.Pending == conns })
	if u.Sockets != conns || u.Targets != 0 || n.podUsage(id) != conns {
		t.Fatalf("registered: %+v, pod usage %d", u, n.podUsage(id))
	}
	s, err := n.Sweep()
	if err != nil || s.Expired != 0 || s.Pending != 0 {
		t.Fatalf("sweep of young registrations = %+v, %v; want them kept", s, err)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if s, err = n.Sweep(); err != nil || s.Expired != conns || s.Pending != conns {
		t.Fatalf("sweep after the TTL = %+v, %v; want the %d registrations released", s, err, conns)
	}
	if u, err = n.Usage(); err != nil || u.Pending != 0 || u.Sockets != 0 || u.Targets != 0 {
		t.Errorf("after the release: %+v, %v; want no registration, no socket", u, err)
	}
	if got := n.podUsage(id); got != 0 {
		t.Errorf("the pod holds %d entries after the release, want 0", got)
	}
	if got := p.do(t, "echo"); got != strconv.Itoa(conns) {
		t.Errorf("echo on the released connections: %s of %d", got, conns)
	}
	if tot := n.SweepTotals(); tot.Expired != conns {
		t.Errorf("SweepTotals = %+v, want %d expired", tot, conns)
	}
}

// A pairing can come late: a listener with TCP_DEFER_ACCEPT establishes
// the accepting side only when the first data arrives. Without a sweep the
// late pairing is recorded; once the sweep released the registration it
// cannot be: the accepting side finds no peer and the connection carries
// its bytes on the stack, whole (the connecting socket left the socket
// maps before any pair could redirect to it).
func TestLatePairingAfterRelease(t *testing.T) {
	const ttl = time.Second
	n := testNode(t, Options{MapSize: 1024, RegistrationTTL: ttl})
	p, id := attachTestPod(t, n, "late", PodConfig{TrustApp: true})

	// Not released: paired at the first data.
	p.do(t, "defer")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Pending == 1 })
	before := counters(t, n)
	p.do(t, "deferdata")
	if d := counters(t, n).Sub(before); d["connections_accepted"] != 1 {
		t.Fatalf("the deferred connection was not paired at its first data: %v", d)
	}
	p.do(t, "close")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 0 && u.Sockets == 0 && u.Targets == 0 })

	// Released before the data.
	p.do(t, "defer")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Pending == 1 })
	time.Sleep(ttl + 100*time.Millisecond)
	if s, err := n.Sweep(); err != nil || s.Expired != 1 {
		t.Fatalf("sweep = %+v, %v; want the registration released", s, err)
	}
	before = counters(t, n)
	if got := p.do(t, "deferdata"); got != strconv.Itoa(2*65536) {
		t.Errorf("deferdata: %s bytes", got)
	}
	d := counters(t, n).Sub(before)
	if d["connections_accepted"] != 0 || d["rejected_no_local_peer"] != 1 || d["messages_redirected"] != 0 {
		t.Errorf("a released registration was paired late, or not refused: %v", d)
	}
	if u, err := n.Usage(); err != nil || u.Directions != 0 || u.Pending != 0 || n.podUsage(id) != 0 {
		t.Errorf("after the late connection: %+v, %v, pod usage %d", u, err, n.podUsage(id))
	}
}

// The sweep's recount corrects the usage counts by delta: charges the data
// path makes while the sweep scans are kept (here, connections opened
// after the scans and before the recount, the worst moment for a recount
// that overwrites), a count that drifted is corrected exactly by a sweep
// that nothing disturbs, and an undercount is corrected even while the
// count moves, by what exceeds the moves.
func TestRecountKeepsChargesDuringScan(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	addr := echoListener(t)
	p, id := attachTestPod(t, n, "busy", PodConfig{TrustApp: true})
	pending := func(want int) {
		t.Helper()
		waitFor(t, n.Usage, func(u Usage) bool { return u.Pending == want })
	}
	p.do(t, "dial %s 20", addr)
	pending(20)

	n.scanHook = func() {
		p.do(t, "dial %s 10", addr)
		pending(30)
	}
	s, err := n.Sweep()
	n.scanHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if got := n.podUsage(id); got != 30 {
		t.Errorf("after a sweep during which the pod registered 10 connections: usage %d, want 30 (sweep %+v)", got, s)
	}

	// 5 registrations leave unseen (as if another sweeper removed them):
	// the count is 5 too high until a quiet sweep corrects it.
	removed := 0
	var (
		e meshEndpointKey
		h meshHelperVal
	)
	var keys []meshEndpointKey
	it := n.maps.SockHelperMap.Iterate()
	for it.Next(&e, &h) && len(keys) < 5 {
		keys = append(keys, e)
	}
	for _, k := range keys {
		if err := n.maps.SockHelperMap.Delete(&k); err == nil {
			removed++
		}
	}
	if removed != 5 {
		t.Fatalf("removed %d registrations, want 5", removed)
	}
	if s, err = n.Sweep(); err != nil || s.Recounted != 1 {
		t.Fatalf("quiet sweep = %+v, %v; want the pod's count corrected", s, err)
	}
	if got := n.podUsage(id); got != 25 {
		t.Errorf("after a quiet sweep: usage %d, want the 25 registrations left", got)
	}

	// An undercount of 8 while 2 connections are opened during the sweep:
	// corrected by at least 6 at once, exactly by the next quiet sweep.
	if _, err := n.usageOp(id, -8); err != nil {
		t.Fatal(err)
	}
	n.scanHook = func() {
		p.do(t, "dial %s 2", addr)
		pending(27)
	}
	s, err = n.Sweep()
	n.scanHook = nil
	if got := n.podUsage(id); err != nil || got < 25 || got > 27 {
		t.Errorf("after a busy sweep of an undercount: usage %d (sweep %+v, %v), want 25 to 27 of 27", got, s, err)
	}
	if _, err := n.Sweep(); err != nil {
		t.Fatal(err)
	}
	if got := n.podUsage(id); got != 27 {
		t.Errorf("after a quiet sweep: usage %d, want 27", got)
	}
	// Every change, the corrections too, kept the borrowed count in step:
	// the pod's entries beyond its guaranteed share.
	sh, err := n.Share()
	if want := n.podUsage(id) - int64(sh.Guaranteed); err != nil || sh.Borrowed != want {
		t.Errorf("share %+v, %v: borrowed %d, want the pod's %d entries beyond its guaranteed share",
			sh, err, sh.Borrowed, want)
	}
}

// A direction whose reader closed unseen (its pod detached) is released by
// the sweep but stays charged while its own socket is in the socket maps,
// so that a pod cannot fill the socket maps with connections whose peers
// it deletes; the socket's close removes it.
func TestPeerLostDirectionKeepsSocketCharged(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	server, _ := attachTestPod(t, n, "server", PodConfig{TrustApp: true})
	client, cid := attachTestPod(t, n, "client", PodConfig{TrustApp: true})
	addr := server.do(t, "listen")
	client.do(t, "dial %s 1", addr)
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 2 })
	if got := n.podUsage(cid); got != 2 {
		t.Fatalf("client pod usage %d, want 2", got)
	}
	if err := n.DetachPod("server"); err != nil {
		t.Fatal(err)
	}
	server.do(t, "close")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Sockets == 1 })
	s, err := n.Sweep()
	if err != nil || s.Directions != 2 || s.PeerGone != 1 {
		t.Fatalf("sweep = %+v, %v; want the server's direction removed, the client's released", s, err)
	}
	if ds, err := n.Directions(); err != nil || len(ds) != 0 {
		t.Errorf("directions listed: %+v, %v", ds, err)
	}
	if got := n.podUsage(cid); got != 1 {
		t.Errorf("client pod usage %d with its socket still in the socket maps, want 1", got)
	}
	client.do(t, "close")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 0 && u.Sockets == 0 })
	if got := n.podUsage(cid); got != 0 {
		t.Errorf("client pod usage %d after its socket closed, want 0", got)
	}
}

// A socket reset while its process holds it stays in the socket maps until
// the process closes it: with nothing unread it leaves them at once; with
// unread redirected bytes it keeps them (the reader reads them whole) and
// stays charged until it is closed.
func TestResetSocketHeldByItsProcess(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	p, id := attachTestPod(t, n, "resets", PodConfig{TrustApp: true})

	p.do(t, "self 1")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 2 })
	p.do(t, "unread 0")
	u := waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 0 })
	if u.Sockets != 0 || u.Targets != 0 || n.podUsage(id) != 0 {
		t.Errorf("reset with nothing unread: %+v, pod usage %d; want the held socket out of the maps", u, n.podUsage(id))
	}
	p.do(t, "close")

	p.do(t, "self 1")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 2 })
	before := counters(t, n)
	p.do(t, "unread 1000")
	u = waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 1 })
	if u.Sockets == 0 || n.podUsage(id) != 1 {
		t.Errorf("reset with 1000 bytes unread: %+v, pod usage %d; want the held socket kept, charged", u, n.podUsage(id))
	}
	if got := p.do(t, "readall"); got != "1000" {
		t.Errorf("the reader read %s of the 1000 bytes before the reset", got)
	}
	if d := counters(t, n).Sub(before); d["bytes_redirected"] != 1000 {
		t.Errorf("bytes redirected %d, want 1000", d["bytes_redirected"])
	}
	p.do(t, "close")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Sockets == 0 && u.Targets == 0 })
	if released, err := n.ReleaseClosed(); err != nil || released != 1 {
		t.Errorf("ReleaseClosed = %d, %v; want the closed socket's direction", released, err)
	}
	if got := n.podUsage(id); got != 0 {
		t.Errorf("pod usage %d, want 0", got)
	}
}

// A direction that Drain released (its sender not known) is stamped with
// its sender's cookie when that socket is reset with redirected bytes unread:
// the close of a later socket on its tuple then leaves it, and the socket
// and its bytes (TestTupleReuseAfterResetUntrusted, in test/e2e, without the
// drain).
func TestDrainedHeldSocketKeepsItsEntry(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	p, _ := attachTestPod(t, n, "stamped", PodConfig{TrustApp: true})
	p.do(t, "self 1")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 2 })
	p.do(t, "write 1000")
	if got, err := n.Drain(0); err != nil || got != 2 {
		t.Fatalf("Drain = %d, %v; want 2", got, err)
	}
	cookie, err := strconv.ParseUint(strings.TrimPrefix(p.do(t, "cookie"), "ok "), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	senders := func() (map[uint64]bool, error) {
		got := map[uint64]bool{}
		var k meshSockKey
		var v meshProxyVal
		it := n.maps.SockProxyMap.Iterate()
		for it.Next(&k, &v) {
			if v.Flags&proxyReleased != 0 {
				got[v.PeerCookie] = true
			}
		}
		return got, it.Err()
	}
	if got, err := senders(); err != nil || len(got) != 1 || !got[0] {
		t.Fatalf("released by Drain: senders %v, %v; want none known", got, err)
	}
	p.do(t, "unread 0")
	got := waitFor(t, senders, func(got map[uint64]bool) bool { return got[cookie] })
	if u, err := n.Usage(); err != nil || u.Sockets+u.Targets == 0 {
		t.Errorf("after the reset: %+v, %v; want the reader with unread bytes kept in its socket map (senders %v)", u, err, got)
	}
	if got := p.do(t, "readall"); got != "1000" {
		t.Errorf("the reader read %s of the 1000 bytes redirected before the drain", got)
	}
	p.do(t, "close")
}

// Drain releases the directions it moves to the stack: their sockets stay
// in the socket maps, charged, until they close.
func TestDrainKeepsSocketsCharged(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	p, id := attachTestPod(t, n, "drained", PodConfig{TrustApp: true})
	p.do(t, "self 2")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 4 })
	if got, err := n.Drain(0); err != nil || got != 4 {
		t.Fatalf("Drain = %d, %v; want 4", got, err)
	}
	if got, err := n.Drain(0); err != nil || got != 0 {
		t.Errorf("second Drain = %d, %v; want 0", got, err)
	}
	if ds, _ := n.Directions(); len(ds) != 0 || n.podUsage(id) != 4 {
		t.Errorf("after the drain: %d directions listed, pod usage %d; want none, 4", len(ds), n.podUsage(id))
	}
	p.do(t, "close")
	waitFor(t, n.Usage, func(u Usage) bool { return u.Directions == 0 && u.Sockets == 0 })
	if got := n.podUsage(id); got != 0 {
		t.Errorf("pod usage %d after the drained connections closed, want 0", got)
	}
}

// A detached pod's usage count stays while entries are charged to it, and
// the sweep removes it once none are.
func TestDetachedPodUsageRetired(t *testing.T) {
	n := testNode(t, Options{MapSize: 1024})
	addr := echoListener(t)
	p, id := attachTestPod(t, n, "gone", PodConfig{TrustApp: true})
	p.do(t, "dial %s 3", addr)
	waitFor(t, n.Usage, func(u Usage) bool { return u.Pending == 3 })
	if err := n.DetachPod("gone"); err != nil {
		t.Fatal(err)
	}
	var u meshUsageVal
	if err := n.maps.PodUsage.Lookup(id, &u); err != nil || usedOf(u.Word) != 3 {
		t.Fatalf("usage of the detached pod: %d, %v; want its 3 entries", usedOf(u.Word), err)
	}
	p.do(t, "close") // unseen: its pod is detached
	waitFor(t, n.Usage, func(u Usage) bool { return u.Sockets == 0 })
	if s, err := n.Sweep(); err != nil || s.Pending != 3 {
		t.Fatalf("sweep = %+v, %v; want the 3 registrations removed", s, err)
	}
	if _, err := n.Sweep(); err != nil {
		t.Fatal(err)
	}
	if err := n.maps.PodUsage.Lookup(id, &u); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("the detached pod's usage count is still there (%d, %v)", usedOf(u.Word), err)
	}
}
