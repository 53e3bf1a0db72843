package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Socket options whose semantics redirection cannot keep: for each, the
// direction takes the stack, which keeps them.

// envSockopt makes the test binary a role of these tests ([sockoptSpec]).
const envSockopt = "MESH_ACCEL_TEST_SOCKOPT"

type sockoptSpec struct {
	Role   string // "lowat" (server), "writer" or "zerocopy" (clients)
	Addr   string
	Lowat  int   // lowat: SO_RCVLOWAT of the listener, inherited by accepted sockets
	Writes int   // zerocopy: number of MSG_ZEROCOPY writes of 16 KiB
	Bytes  int64 // lowat: bytes expected; writer: bytes to write
}

type sockoptResult struct {
	Bytes       int64
	HashOK      bool
	Reads       int
	ShortReads  int    // reads below the low-water mark, the last one before EOF excepted
	Completions uint32 // zerocopy: sends reported complete on the error queue
	Calls       uint32 // zerocopy: MSG_ZEROCOPY send calls
	Data        string // collect: what was read
	roleError
}

func sockoptRole(js string) {
	roleMain(js, func(spec sockoptSpec, res *sockoptResult) error {
		switch spec.Role {
		case "lowat":
			return spec.lowat(res)
		case "zerocopy":
			return spec.zerocopy(res)
		case "writer":
			return spec.write(res)
		case "oob":
			return spec.oob()
		case "collect":
			return spec.collect(res)
		}
		return fmt.Errorf("unknown role %q", spec.Role)
	})
}

// lowat accepts one connection on a listener with SO_RCVLOWAT (inherited
// by the accepted socket) and reads the stream of seed 3 to EOF with
// blocking reads, counting reads below the mark.
func (s sockoptSpec) lowat(res *sockoptResult) error {
	ap, err := netip.ParseAddrPort(s.Addr)
	if err != nil {
		return err
	}
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(ln)
	for _, opt := range [][2]int{{unix.SO_REUSEADDR, 1}, {unix.SO_RCVLOWAT, s.Lowat}} {
		if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, opt[0], opt[1]); err != nil {
			return err
		}
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return err
	}
	if err := unix.Listen(ln, 1); err != nil {
		return err
	}
	fmt.Println("ready")
	fd, _, err := unix.Accept(ln)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	want, buf := sim.NewStream(3), make([]byte, 1<<20)
	exp := make([]byte, len(buf))
	res.HashOK = true
	for {
		n, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		res.Reads++
		if n < s.Lowat && res.Bytes+int64(n) < s.Bytes {
			res.ShortReads++
		}
		want.Read(exp[:n])
		res.HashOK = res.HashOK && string(exp[:n]) == string(buf[:n])
		res.Bytes += int64(n)
	}
}

// oob writes "ab", the urgent byte "c" (MSG_OOB), then "de", and closes.
func (s sockoptSpec) oob() error {
	c, err := net.Dial("tcp4", s.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	for _, part := range []struct {
		b     string
		flags int
	}{{"ab", 0}, {"c", unix.MSG_OOB}, {"de", 0}} {
		if err := rc.Write(func(fd uintptr) bool {
			serr = unix.Sendto(int(fd), []byte(part.b), part.flags, nil)
			return !errors.Is(serr, unix.EAGAIN)
		}); err != nil || serr != nil {
			return errors.Join(err, serr)
		}
		time.Sleep(50 * time.Millisecond) // separate segments, as an app would send them
	}
	return nil
}

// collect accepts one connection and reads it to EOF with plain reads.
func (s sockoptSpec) collect(res *sockoptResult) error {
	c, err := acceptOne(s.Addr, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	b, err := io.ReadAll(c)
	res.Data = string(b)
	return err
}

// write sends Bytes of the stream of seed 3 in 4 KiB writes, then closes.
func (s sockoptSpec) write(res *sockoptResult) error {
	d := net.Dialer{}
	c, err := d.Dial("tcp4", s.Addr)
	if err != nil {
		return err
	}
	defer c.Close()
	st, buf := sim.NewStream(3), make([]byte, 4<<10)
	for res.Bytes < s.Bytes {
		k := int(min(int64(len(buf)), s.Bytes-res.Bytes))
		st.Read(buf[:k])
		if _, err := c.Write(buf[:k]); err != nil {
			return err
		}
		res.Bytes += int64(k)
	}
	return nil
}

// zerocopy sends Writes messages with MSG_ZEROCOPY to an app's sink and
// waits up to 5 s for their completions on the error queue.
func (s sockoptSpec) zerocopy(res *sockoptResult) error {
	fd, err := dialRaw(s.Addr)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ZEROCOPY, 1); err != nil {
		return fmt.Errorf("SO_ZEROCOPY: %w", err)
	}
	if _, err := unix.Write(fd, []byte{sim.OpSink}); err != nil {
		return err
	}
	st, h := sim.NewStream(3), sha256.New()
	calls := uint32(0) // MSG_ZEROCOPY send calls, each to be completed
	for i := 0; i < s.Writes; i++ {
		buf := make([]byte, 16<<10) // never reused: completions are what would allow it
		st.Read(buf)
		h.Write(buf)
		for off := 0; off < len(buf); {
			n, err := unix.SendmsgN(fd, buf[off:], nil, nil, unix.MSG_ZEROCOPY)
			if err != nil {
				return fmt.Errorf("send %d: %w", i, err)
			}
			calls++
			off += n
		}
		res.Bytes += int64(len(buf))
	}
	res.Calls = calls
	// Completions: ranges of send call numbers, counted from 0.
	deadline := time.Now().Add(5 * time.Second)
	oob := make([]byte, 256)
	for time.Now().Before(deadline) && res.Completions < calls {
		_, oobn, _, _, err := unix.Recvmsg(fd, nil, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return fmt.Errorf("error queue: %w", err)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if len(m.Data) < 16 || m.Data[4] != unix.SO_EE_ORIGIN_ZEROCOPY {
				continue
			}
			hi := binary.NativeEndian.Uint32(m.Data[12:16]) // ee_data: last send of the range
			res.Completions = max(res.Completions, hi+1)
		}
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return err
	}
	reply := make([]byte, sim.SinkReplyLen)
	for got := 0; got < len(reply); {
		n, err := unix.Read(fd, reply[got:])
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return fmt.Errorf("read reply: %d bytes, %v", got, err)
		}
		got += n
	}
	res.HashOK = int64(binary.BigEndian.Uint64(reply)) == res.Bytes && string(reply[8:]) == string(h.Sum(nil))
	return nil
}

func runSockopt(t *testing.T, ctx context.Context, p *sim.Pod, spec sockoptSpec) *sim.Proc {
	t.Helper()
	// No preemption signals: a signal ends a blocking read early, below
	// the low-water mark, on any socket.
	return startRole(t, ctx, p, envSockopt, spec, spec.Role == "lowat" || spec.Role == "collect", "GODEBUG=asyncpreemptoff=1")
}

func sockoptWait(t *testing.T, p *sim.Proc) sockoptResult { return waitRole[sockoptResult](t, p) }

// A reader with SO_RCVLOWAT gets no read below its mark (but the last):
// data towards it takes the stack, which honours the mark; the redirect
// queue would hand it whatever is there.
func TestReaderWithRcvlowat(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	ctx := roleCtx(t)
	const lowat, size = 64 << 10, 8 << 20
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	srv := runSockopt(t, ctx, b, sockoptSpec{Role: "lowat", Addr: addr, Lowat: lowat, Bytes: size})
	before := e.counters()
	if w := sockoptWait(t, runSockopt(t, ctx, a, sockoptSpec{Role: "writer", Addr: addr, Bytes: size})); w.Error != "" {
		t.Fatalf("writer: %+v", w)
	}
	res := sockoptWait(t, srv)
	e.waitNoConns()
	cs := e.counters().Sub(before)
	t.Logf("%+v; counters %v", res, cs)
	if res.Error != "" || res.Bytes != size || !res.HashOK {
		t.Fatalf("reader: %+v", res)
	}
	if res.ShortReads != 0 {
		t.Errorf("%d of %d reads returned less than SO_RCVLOWAT %d", res.ShortReads, res.Reads, lowat)
	}
	wantPositive(t, cs, "stack_rcvlowat_reader", "connections_accepted")
}

// A sender with MSG_ZEROCOPY gets a completion for every send on its
// error queue: its direction takes the stack, which reports them.
func TestZerocopySender(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	ctx := roleCtx(t)
	before := e.counters()
	const writes = 64
	res := sockoptWait(t, runSockopt(t, ctx, a, sockoptSpec{Role: "zerocopy", Addr: b.AppTarget(false), Writes: writes}))
	e.waitNoConns()
	cs := e.counters().Sub(before)
	t.Logf("%+v; counters %v", res, cs)
	if res.Error != "" || !res.HashOK {
		t.Fatalf("zerocopy sender: %+v", res)
	}
	// The sockmap's stack path pushes a send in pieces, each with its own
	// completion id: there may be more ids than sends, never fewer.
	if res.Calls < writes || res.Completions < res.Calls {
		t.Errorf("%d of %d MSG_ZEROCOPY sends completed", res.Completions, res.Calls)
	}
	wantPositive(t, cs, "stack_zerocopy_sender", "connections_accepted")
}

// The documented decision on MSG_OOB: sk_msg cannot see it, so an urgent
// byte sent on a redirected direction arrives inline, where the stack
// would keep it out of the stream (no SO_OOBINLINE). Apps that use urgent
// data must not be declared recvmsg readers; without acceleration their
// sidecar would not relay it either.
func TestUrgentDataInlineWhenRedirected(t *testing.T) {
	e := newEnv(t, optsDefault)
	for _, tc := range []struct {
		name string
		cfg  *bpf.PodConfig
		want string
	}{{"plain", nil, "abde"}, {"redirected", &trustedAll, "abcde"}} {
		a := e.pod("a-"+tc.name, false, tc.cfg)
		b := e.pod("b-"+tc.name, false, tc.cfg)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		addr := net.JoinHostPort(b.IPv4.String(), "9090")
		srv := runSockopt(t, ctx, b, sockoptSpec{Role: "collect", Addr: addr})
		if w := sockoptWait(t, runSockopt(t, ctx, a, sockoptSpec{Role: "oob", Addr: addr})); w.Error != "" {
			t.Fatalf("%s: writer: %s", tc.name, w.Error)
		}
		got := sockoptWait(t, srv)
		cancel()
		if got.Error != "" || got.Data != tc.want {
			t.Errorf("%s: the reader got %q (%s), want %q", tc.name, got.Data, got.Error, tc.want)
		}
	}
	e.waitNoConns()
}
