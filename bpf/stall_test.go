package bpf

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const envFullSendBufHelper = "MESH_ACCEL_TEST_FULL_SENDBUF_HELPER"

// closeNotifySize is the size of a TLS 1.3 close_notify record (5 bytes
// of header, the alert and its content type, 16 of AEAD tag): what Envoy
// writes for a half-close over mutual TLS.
const closeNotifySize = 24

// TestFullSendBufHelper is the child of TestSmallWriteAfterFullSendBuffer,
// run in a pod's cgroup: a connection to itself, paired (a byte each way),
// then "paired" on stdout; once told (a line on stdin) the client writes
// 1000-byte messages without blocking, while the server reads nothing,
// until one is taken whole although it filled the send buffer
// (sk_wmem_queued >= sk_sndbuf, SO_MEMINFO), as a TLS record can be
// just before the close_notify. Then it writes closeNotifySize bytes and
// prints what that write returned, and whether the client's edge-triggered
// epoll registration reports EPOLLOUT once the server has read it all. Run
// as a test of its own, it does nothing.
func TestFullSendBufHelper(t *testing.T) {
	if os.Getenv(envFullSendBufHelper) == "" {
		return
	}
	out, err := fullSendBufHelper()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println(out)
}

func fullSendBufHelper() (string, error) {
	c, s, err := pairedLoopback()
	if err != nil {
		return "", err
	}
	defer c.Close()
	defer s.Close()
	fmt.Println("paired")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return "", err
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	drained := 0
	drain := func(n int) error {
		if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		drained += n
		_, err := io.CopyN(io.Discard, s, int64(n))
		return err
	}
	var res string
	var written int
	var werr error
	if err := raw.Control(func(fd uintptr) { res, written, werr = fillThenSmallWrite(int(fd), drain) }); err != nil {
		return "", err
	}
	if werr != nil {
		return "", werr
	}
	// The server reads every byte; the client's registration, armed while
	// its last write was refused, must report EPOLLOUT.
	var out string
	if err := raw.Control(func(fd uintptr) {
		out, werr = drainAndWaitOut(int(fd), s, written-drained)
	}); err != nil {
		return "", err
	}
	if werr != nil {
		return "", werr
	}
	return res + " " + out, nil
}

// pairedLoopback connects to itself over 127.0.0.1 and sends a byte each
// way, so that a pod's programs pair the connection.
func pairedLoopback() (c, s *net.TCPConn, err error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	defer ln.Close()
	var d net.Dialer
	d.SetMultipathTCP(false)
	cc, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return nil, nil, err
	}
	sc, err := ln.Accept()
	if err != nil {
		cc.Close()
		return nil, nil, err
	}
	one := make([]byte, 1)
	for _, dir := range [][2]net.Conn{{cc, sc}, {sc, cc}} {
		if _, err := dir[0].Write(one); err == nil {
			_, err = io.ReadFull(dir[1], one)
		}
		if err != nil {
			cc.Close()
			sc.Close()
			return nil, nil, err
		}
	}
	return cc.(*net.TCPConn), sc.(*net.TCPConn), nil
}

// sendQueue returns the socket's queued send bytes and its send buffer.
func sendQueue(fd int) (queued, sndbuf uint32, err error) {
	var m [unix.SK_MEMINFO_VARS]uint32
	l := uint32(unsafe.Sizeof(m))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&m[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, 0, fmt.Errorf("SO_MEMINFO: %w", e)
	}
	return m[unix.SK_MEMINFO_WMEM_QUEUED], m[unix.SK_MEMINFO_SNDBUF], nil
}

// fillThenSmallWrite writes 1000-byte messages to the non-blocking fd
// until one is taken whole and leaves the send buffer full, then writes
// closeNotifySize bytes. It returns "accepted" or "refused" for that
// write, and every byte written. A message taken in part or refused (the
// buffer was full before a message could fill it) makes it start over
// once drain has read what was written and the queue emptied.
func fillThenSmallWrite(fd int, drain func(int) error) (string, int, error) {
	msg := make([]byte, 1000)
	written, pending := 0, 0
	for attempt := 0; attempt < 20; attempt++ {
		for i := 0; i < 1<<20; i++ {
			n, err := unix.Write(fd, msg)
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return "", written, err
			}
			if n > 0 {
				written += n
				pending += n
			}
			if n < len(msg) {
				break
			}
			queued, sndbuf, err := sendQueue(fd)
			if err != nil {
				return "", written, err
			}
			if queued < sndbuf {
				continue
			}
			n, err = unix.Write(fd, msg[:closeNotifySize])
			switch {
			case errors.Is(err, unix.EAGAIN):
				return "refused", written, nil
			case err != nil:
				return "", written, err
			case n != closeNotifySize:
				return "", written + n, fmt.Errorf("small write taken in part: %d", n)
			}
			return "accepted", written + n, nil
		}
		if err := drain(pending); err != nil {
			return "", written, err
		}
		pending = 0
		for queued := uint32(1); queued != 0; {
			time.Sleep(time.Millisecond)
			var err error
			if queued, _, err = sendQueue(fd); err != nil {
				return "", written, err
			}
		}
	}
	return "", written, errors.New("no message filled the send buffer whole in 20 attempts")
}

// drainAndWaitOut registers fd for EPOLLOUT (edge-triggered), reads want
// bytes from s, and reports whether EPOLLOUT came within 10 s.
func drainAndWaitOut(fd int, s *net.TCPConn, want int) (string, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return "", err
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return "", err
	}
	// Registering reports the current state once: consume it.
	evs := make([]unix.EpollEvent, 1)
	if _, err := unix.EpollWait(ep, evs, 0); err != nil {
		return "", err
	}
	if err := s.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	if _, err := io.CopyN(io.Discard, s, int64(want)); err != nil {
		return "", fmt.Errorf("server read: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n, err := unix.EpollWait(ep, evs, 100)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 1 && evs[0].Events&unix.EPOLLOUT != 0 {
			return "epollout", nil
		}
	}
	return "no-epollout", nil
}

// A non-blocking writer whose last message was taken whole but filled its
// send buffer: unaccelerated, its next small write is appended to the
// unsent tail of the queue (tcp_sendmsg checks the buffer only for a new
// segment); in the socket map, tcp_bpf_sendmsg checks the buffer before
// every write and refuses it (EAGAIN), whatever its size. Both writers get
// EPOLLOUT once their reader has read: no wake-up is lost. Envoy ignores a
// refused TLS close_notify (SslSocket::shutdownSsl), so the refusal is a
// half-close lost: the stall of the e2e tests (see docs/design.md, Known
// limits). This test shows both behaviours, so that a kernel that changes
// either is noticed.
func TestSmallWriteAfterFullSendBuffer(t *testing.T) {
	n := testNode(t, Options{})
	// Every message takes the stack (flow control holds the direction at
	// once), as when a reader fell behind.
	if err := n.SetBacklogLimit(1); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		accelerated bool
		want        string
	}{{false, "accepted epollout"}, {true, "refused epollout"}} {
		cg := newTestCgroup(t)
		if c.accelerated {
			if err := n.AttachPod("p", cg, PodConfig{TrustApp: true}); err != nil {
				t.Fatal(err)
			}
		}
		before, err := n.Counters()
		if err != nil {
			t.Fatal(err)
		}
		child := startCgroupChild(t, cg, "TestFullSendBufHelper", "paired", envFullSendBufHelper+"=1")
		got := strings.TrimSpace(strings.SplitN(child.proceed(t), "\n", 2)[0])
		after, err := n.Counters()
		if err != nil {
			t.Fatal(err)
		}
		d := after.Sub(before)
		if c.accelerated && (d["connections_accepted"] != 1 || d["flow_control_held"] == 0) {
			t.Errorf("accelerated: the connection was not paired and held: %v", d)
		}
		if !c.accelerated && d["connections_accepted"] != 0 {
			t.Errorf("unaccelerated: the connection was paired: %v", d)
		}
		if got != c.want {
			t.Errorf("accelerated %v: the small write after a full send buffer: %q, want %q", c.accelerated, got, c.want)
		}
		if c.accelerated {
			if err := n.DetachPod("p"); err != nil {
				t.Fatal(err)
			}
		}
	}
}
