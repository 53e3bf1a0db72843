package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// envDeferServer makes the test binary a sink server (the simulator's
// OpSink protocol) listening with TCP_DEFER_ACCEPT on the address it holds.
const envDeferServer = "MESH_ACCEL_TEST_DEFER_SERVER"

// listenTCP listens with plain TCP (Go listens with MPTCP by default, whose
// accepted sockets are never paired) and, when deferSec > 0,
// TCP_DEFER_ACCEPT.
func listenTCP(network, addr string, deferSec int) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		if deferSec <= 0 {
			return nil
		}
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferSec)
		})
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), network, addr)
}

// deferServer serves OpSink with TCP_DEFER_ACCEPT: the kernel creates the
// accepted socket, and so runs PASSIVE_ESTABLISHED, only when the client's
// first data arrives. Every client has written before its pair is recorded.
func deferServer(addr string) {
	ln, err := listenTCP("tcp", addr, 5)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go serveSink(c)
	}
}

// serveSink reads the op byte and the payload with plain reads and replies
// with the payload's length and SHA-256.
func serveSink(c net.Conn) {
	defer c.Close()
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, struct{ io.Reader }{c})
	if err != nil {
		return
	}
	reply := binary.BigEndian.AppendUint64(nil, uint64(n))
	_, _ = c.Write(h.Sum(reply))
}

// Streams that write before their pair is recorded keep that direction on
// the stack until the reader has read every stack byte, then redirect it,
// and every byte arrives in order; the other direction is paired for
// redirection until the client's half-close moves it to the stack.
func TestWriteBeforePairRecorded(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := b.Start(ctx, sim.ProcSpec{Argv: []string{exe}, UID: 0, GID: 0, Ready: "ready",
		Env: []string{envDeferServer + "=[::]:9090"}}); err != nil {
		t.Fatal(err)
	}
	const streams = 16
	target := net.JoinHostPort(b.IPv4.String(), "9090")
	_, c := e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: target, Streams: streams, Bytes: 4 << 20,
		MinWrite: 1, MaxWrite: 1 << 20})
	want(t, c, map[string]uint64{"connections_accepted": streams, "directions_redirected": 2 * streams})
	if c["fallback_stack_first"] < streams {
		t.Errorf("fallback_stack_first = %d, want >= %d (every client direction)", c["fallback_stack_first"], streams)
	}
	// The client directions returned to redirection once the server had
	// read their first bytes.
	wantPositive(t, c, "bytes_redirected")
	// The replies (server -> client) were set up for redirection, then took
	// the stack: each client had shut its write side before the reply.
	want(t, c, map[string]uint64{"stack_after_half_close": streams})
}

// envLateReader makes the test binary a client that half-closes and reads
// the reply only after its socket has reached TIME_WAIT.
const envLateReader = "MESH_ACCEL_TEST_LATE_READER"

// lateReader sends an OpSink request, shuts its write side, waits until the
// server's reply and FIN have arrived (the socket then enters TIME_WAIT,
// which takes it out of the socket map), then reads and prints the reply's
// length.
func lateReader(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	defer c.Close()
	req := make([]byte, 1001)
	req[0] = sim.OpSink
	if _, err := c.Write(req); err != nil {
		fmt.Println("error:", err)
		return
	}
	_ = c.(*net.TCPConn).CloseWrite()
	time.Sleep(500 * time.Millisecond)
	reply, err := io.ReadAll(c)
	fmt.Printf("got %d %v\n", len(reply), err)
}

// A reader that shut its write side and reads late gets its reply: data
// towards a socket that sent its FIN takes the stack, because entering
// TIME_WAIT would drop redirected data it has not read yet.
func TestReplyAfterHalfClose(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	before := e.counters()
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := a.Start(ctx, sim.ProcSpec{Argv: []string{exe},
			Env: []string{envLateReader + "=" + b.AppTarget(false)}})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		err = p.Wait()
		cancel()
		if want := fmt.Sprintf("got %d <nil>", sim.SinkReplyLen); err != nil || strings.TrimSpace(p.Stdout()) != want {
			t.Fatalf("late reader: %q (%v), want %q", p.Stdout(), err, want)
		}
	}
	e.waitNoConns()
	c := e.counters().Sub(before)
	want(t, c, map[string]uint64{"connections_accepted": 5, "stack_after_half_close": 5})
}
