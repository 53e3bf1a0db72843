package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// envResetPeer makes the test binary one end of the lost-reset repro
// ([resetPeerSpec] as JSON).
const envResetPeer = "MESH_ACCEL_TEST_RESET_PEER"

func init() { roles[envResetPeer] = resetPeer }

type resetPeerSpec struct {
	Addr   string // the app server's ip:port
	Conns  int    // connections, one after the other
	Bytes  int64  // the app writes this much, then resets (sim.OpReset)
	Read   int    // the client's read size
	WaitMs int64  // the client's bound on one read
	// StartUs delays the client's first read, so that the app is ahead
	// when it resets.
	StartUs int64
	// Peek makes a second thread of the client peek (MSG_PEEK) at what
	// the socket holds, back to back: the socket is locked most of the
	// time, as a busy reader's is.
	Peek bool
}

// resetPeerResult is what the client saw, by connection.
type resetPeerResult struct {
	Outcomes map[string]int // reset, eof, hung, error
	Short    int            // connections that ended before all bytes arrived (the reset discards unsent bytes)
	Notes    []string
	roleError
}

func resetPeer(js string) { roleMain(js, resetPeerSpec.run) }

func (spec resetPeerSpec) run(res *resetPeerResult) error {
	res.Outcomes = map[string]int{}
	for i := 0; i < spec.Conns; i++ {
		outcome, got, err := spec.readOne()
		if err != nil {
			return err
		}
		res.Outcomes[outcome]++
		if got != spec.Bytes {
			res.Short++
		}
		if outcome != "reset" && len(res.Notes) < 5 {
			res.Notes = append(res.Notes, fmt.Sprintf("conn %d: %s after %d bytes", i, outcome, got))
		}
	}
	return nil
}

// readOne connects, asks the app for Bytes and a reset, and reads with blocking reads of Read bytes until the
// reset, EOF or a read that waits WaitMs.
func (spec resetPeerSpec) readOne() (string, int64, error) {
	fd, err := dialRaw(spec.Addr)
	if err != nil {
		return "", 0, err
	}
	defer unix.Close(fd)
	req := binary.BigEndian.AppendUint64([]byte{sim.OpReset}, uint64(spec.Bytes))
	if _, err := unix.Write(fd, req); err != nil {
		return "", 0, err
	}
	tv := unix.NsecToTimeval(spec.WaitMs * int64(time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return "", 0, err
	}
	// A reset seen by the peeking thread (which takes the socket's error).
	var peekReset atomic.Bool
	stopPeek := func() {}
	if spec.Peek {
		var stop atomic.Bool
		done := make(chan struct{})
		stopPeek = func() { stop.Store(true); <-done }
		defer stopPeek()
		go func() {
			defer close(done)
			runtime.LockOSThread()
			pb := make([]byte, 4<<20)
			for !stop.Load() {
				_, _, err := unix.Recvfrom(fd, pb, unix.MSG_PEEK|unix.MSG_DONTWAIT)
				if errors.Is(err, unix.ECONNRESET) {
					peekReset.Store(true)
				}
				if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
					return
				}
			}
		}()
	}
	buf := make([]byte, spec.Read)
	time.Sleep(time.Duration(spec.StartUs) * time.Microsecond)
	var got int64
	deadline := time.Now().Add(time.Duration(spec.WaitMs) * time.Millisecond)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case n > 0:
			got += int64(n)
			deadline = time.Now().Add(time.Duration(spec.WaitMs) * time.Millisecond)
		case errors.Is(err, unix.ECONNRESET):
			return "reset", got, nil
		case err == nil:
			if stopPeek(); peekReset.Load() {
				return "reset", got, nil
			}
			return "eof", got, nil
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			// A socket in a socket map can be woken without data
			// (see rawWriter); only the bound counts.
			if time.Now().After(deadline) {
				return "hung", got, nil
			}
		default:
			return "error " + err.Error(), got, nil
		}
	}
}

// backlogDrops is TcpExtTCPBacklogDrop in p's network namespace.
func backlogDrops(t *testing.T, p *sim.Pod) int64 {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+p.Netns, "nstat", "-asz", "TcpExtTCPBacklogDrop").CombinedOutput()
	if err != nil {
		t.Fatalf("nstat: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "TcpExtTCPBacklogDrop" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// lostResets runs conns connections from a's client to b's app (over
// loopback: a is b), each
// carrying bytes and ended by the server's reset, and returns the client's
// outcomes, the drops of packets for a's locked sockets (TCPBacklogDrop)
// and the counters' change.
func (e *env) lostResets(a, b *sim.Pod, conns int, bytes, startUs int64, read int) (resetPeerResult, int64, bpf.Counters) {
	t := e.t
	t.Helper()
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), b.Options.AppPort).String()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	before, drops := e.counters(), backlogDrops(t, a)
	res := waitRole[resetPeerResult](t, startRole(t, ctx, a, envResetPeer,
		resetPeerSpec{Addr: addr, Conns: conns, Bytes: bytes, Read: read, WaitMs: 2000, StartUs: startUs, Peek: true}, false))
	if res.Error != "" {
		t.Fatalf("client: %+v", res)
	}
	e.waitNoConns()
	return res, backlogDrops(t, a) - drops, e.counters().Sub(before)
}

// An app that sends 4 MiB as fast as the kernel takes them and then resets
// its connection (SO_LINGER 0 close), over loopback in one pod, to a client
// that starts reading 20 ms later and meanwhile peeks at its socket from a
// second thread, back to back (so the socket is locked most of the time,
// as a busy reader's is): the client sees the reset, accelerated as plain.
// A packet that arrives while the receiver's socket is locked waits on the
// socket's backlog, which drops it (TcpExtTCPBacklogDrop) when the
// backlog plus the socket's receive memory pass 2*rcvbuf + sndbuf/2 +
// 64 KiB (tcp_add_backlog); unread redirected bytes count in that memory.
// Data and FIN are retransmitted, a reset is not: without flow control
// below that limit the client waits for good.
func TestLostReset(t *testing.T) {
	conns := 100
	if testing.Short() {
		conns = 50
	}
	e := newEnv(t, optsDefault)
	for _, pair := range []struct {
		name string
		cfg  *bpf.PodConfig
	}{{"plain", nil}, {"accelerated", &trustedAll}} {
		a := e.pod("r"+pair.name[:1], false, pair.cfg)
		res, drops, c := e.lostResets(a, a, conns, 4<<20, 20000, 64<<10)
		t.Logf("%s: %d connections of 4 MiB then reset: %v, %d short; TCPBacklogDrop %d; "+
			"redirected %d MiB, held %d, resumed %d: %v",
			pair.name, conns, res.Outcomes, res.Short, drops, c["bytes_redirected"]>>20,
			c["flow_control_held"], c["flow_control_resumed"], res.Notes)
		if res.Outcomes["reset"] != conns || drops != 0 {
			t.Errorf("%s: outcomes %v, TCPBacklogDrop %d; want %d resets, no drop: %v",
				pair.name, res.Outcomes, drops, conns, res.Notes)
		}
		if pair.cfg != nil {
			wantPositive(t, c, "bytes_redirected")
		}
	}
}
