package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// envRawWriter makes the test binary a writer with raw system calls
// ([rawWriterSpec] as JSON): what a C program sees, without Go's poller.
const envRawWriter = "MESH_ACCEL_TEST_RAW_WRITER"

type rawWriterSpec struct {
	Target      string // ip:port of an app server
	NonBlocking bool   // O_NONBLOCK and epoll, else blocking writes
	Bytes       int64
	PauseAfter  int64 // the slow sink's pause
	PauseMs     int64
}

// rawWriterResult is what the writer saw.
type rawWriterResult struct {
	Written   int64
	Writes    int
	Partial   int // writes that took less than offered
	EAGAIN    int
	PollOut   int   // epoll wake-ups for EPOLLOUT
	MaxWaitMs int64 // longest single write (blocking) or epoll wait
	// ReadEAGAIN counts EAGAIN from blocking reads of the reply.
	ReadEAGAIN int
	roleError
	Reply  int64 // bytes the server counted
	HashOK bool
}

// rawWriter sends an OpSinkSlow request and the stream for seed 1 in
// 128 KiB writes, then half-closes and checks the sink's reply.
func rawWriter(js string) { roleMain(js, rawWriterSpec.run) }

func (spec rawWriterSpec) run(res *rawWriterResult) error {
	fd, err := dialRaw(spec.Target)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ep := -1
	if spec.NonBlocking {
		if err := unix.SetNonblock(fd, true); err != nil {
			return err
		}
		if ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
			return err
		}
		defer unix.Close(ep)
		ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLET, Fd: int32(fd)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return err
		}
	}
	hdr := make([]byte, 25)
	hdr[0] = sim.OpSinkSlow
	binary.BigEndian.PutUint64(hdr[1:], uint64(spec.PauseAfter))
	binary.BigEndian.PutUint64(hdr[9:], uint64(spec.PauseMs))
	binary.BigEndian.PutUint64(hdr[17:], 1000) // 1 ms after each read
	st, h := sim.NewStream(1), sha256.New()
	buf := make([]byte, 128<<10)
	pending := hdr
	for left := spec.Bytes; left > 0 || len(pending) > 0; {
		if len(pending) == 0 {
			chunk := buf[:min(int64(len(buf)), left)]
			st.Read(chunk)
			h.Write(chunk)
			left -= int64(len(chunk))
			pending = chunk
		}
		start := time.Now()
		n, err := unix.Write(fd, pending)
		res.MaxWaitMs = max(res.MaxWaitMs, time.Since(start).Milliseconds())
		res.Writes++
		if errors.Is(err, unix.EAGAIN) {
			res.EAGAIN++
			if err := waitOut(ep, res); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("write after %d bytes: %w", res.Written, err)
		}
		if n < len(pending) {
			res.Partial++
		}
		res.Written += int64(n)
		pending = pending[n:]
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return err
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		return err
	}
	// A blocking read of a socket in a socket map can return EAGAIN when
	// the socket is woken without data (tcp_bpf_recvmsg, still in 6.18),
	// e.g. by the write-space wake-up of ACKs for its own earlier stack
	// writes. Count it, wait for POLLIN and read again, as event loops do.
	reply := make([]byte, sim.SinkReplyLen)
	for got := 0; got < len(reply); {
		n, err := unix.Read(fd, reply[got:])
		if errors.Is(err, unix.EAGAIN) {
			res.ReadEAGAIN++
			if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 60_000); err != nil && !errors.Is(err, unix.EINTR) {
				return err
			}
			continue
		}
		if err != nil || n == 0 {
			return fmt.Errorf("read reply: %d bytes, %v", got, err)
		}
		got += n
	}
	res.Reply = int64(binary.BigEndian.Uint64(reply))
	res.HashOK = bytes.Equal(reply[8:], h.Sum(nil))
	return nil
}

// waitOut waits for EPOLLOUT.
func waitOut(ep int, res *rawWriterResult) error {
	events := make([]unix.EpollEvent, 1)
	start := time.Now()
	for {
		n, err := unix.EpollWait(ep, events, 60_000)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no EPOLLOUT within 60 s")
		}
		res.MaxWaitMs = max(res.MaxWaitMs, time.Since(start).Milliseconds())
		if events[0].Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			return fmt.Errorf("epoll events %#x", events[0].Events)
		}
		res.PollOut++
		return nil
	}
}

// runRawWriter runs the raw writer in pod a towards b's app.
func runRawWriter(t *testing.T, a, b *sim.Pod, spec rawWriterSpec) rawWriterResult {
	t.Helper()
	spec.Target = b.AppTarget(false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return waitRole[rawWriterResult](t, startRole(t, ctx, a, envRawWriter, spec, false))
}

// Writers that are not Go programs see what plain TCP gives them while
// their reader is slow and then stops for 3 s: a non-blocking writer gets
// partial writes, EAGAIN and EPOLLOUT wake-ups, never ENOMEM and never a
// hang; a blocking writer blocks in write. Every byte arrives.
func TestRawWriters(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	pa := e.pod("pa", true, nil)
	pb := e.pod("pb", true, nil)
	for _, nb := range []bool{true, false} {
		for _, pair := range []struct {
			name string
			a, b *sim.Pod
		}{{"plain", pa, pb}, {"accelerated", a, b}} {
			spec := rawWriterSpec{NonBlocking: nb, Bytes: 64 << 20, PauseAfter: 8 << 20, PauseMs: 3000}
			before := e.counters()
			stop := e.watchdog(40*time.Second, e.pods...)
			res := runRawWriter(t, pair.a, pair.b, spec)
			stop()
			e.waitNoConns()
			c := e.counters().Sub(before)
			t.Logf("%s non-blocking=%v: %+v; redirected %d MiB, held %d", pair.name, nb, res,
				c["bytes_redirected"]>>20, c["flow_control_held"])
			if res.Error != "" || res.Written != spec.Bytes+25 || res.Reply != spec.Bytes || !res.HashOK {
				t.Errorf("%s non-blocking=%v: %+v", pair.name, nb, res)
			}
			if nb && (res.EAGAIN == 0 || res.PollOut == 0) {
				t.Errorf("%s: non-blocking writer saw %d EAGAIN and %d EPOLLOUT, want both > 0", pair.name, res.EAGAIN, res.PollOut)
			}
			// The reader stopped for 3 s: the writer had to wait most of it.
			if res.MaxWaitMs < 1000 {
				t.Errorf("%s non-blocking=%v: longest wait %d ms, want the writer held while the reader stopped", pair.name, nb, res.MaxWaitMs)
			}
			if pair.a == a {
				wantPositive(t, c, "flow_control_held", "bytes_redirected")
			}
		}
	}
}
