package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// appArgs are the arguments of the app server role.
type appArgs struct {
	Port uint16
	Pod  string
}

// maxSinkRead and maxGenWrite bound the varying I/O sizes of the app server.
const (
	maxSinkRead = 256 << 10
	maxGenWrite = 1 << 20
)

// app is the state of one app server process.
type app struct {
	args     appArgs
	sinkAddr string       // loopback listener used by OpSinkSplice
	conns    atomic.Int64 // connection counter, seeds the read sizes
}

// runApp serves the protocol on [::]:Port (dual-stack) until killed.
func runApp(a appArgs) error {
	ln, err := listenDual(a.Port)
	if err != nil {
		return err
	}
	sink, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("internal sink: %w", err)
	}
	s := &app{args: a, sinkAddr: sink.Addr().String()}
	go s.serveInternalSink(sink)
	printReady(ln.Addr().String())
	for {
		c, err := accept(ln)
		if err != nil {
			return err
		}
		go s.serve(c)
	}
}

// listenDual listens on [::]:port with IPV6_V6ONLY=0, so that IPv4 clients
// are accepted as IPv4-mapped IPv6 addresses, like Envoy and most servers.
// It is plain TCP: Go (1.24 and later) listens with MPTCP by default, whose
// accepted sockets the data path never accelerates (see "MPTCP" in docs/design.md).
func listenDual(port uint16) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		})
		return errors.Join(err, serr)
	}}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		return nil, fmt.Errorf("listen on port %d: %w", port, err)
	}
	return ln, nil
}

// serve handles one connection by its op code.
func (s *app) serve(c *net.TCPConn) {
	defer c.Close()
	var op [1]byte
	if _, err := io.ReadFull(c, op[:]); err != nil {
		return
	}
	var err error
	switch op[0] {
	case OpEcho:
		err = echoLoop(c)
	case OpSink:
		err = s.sinkPlain(c)
	case OpSinkFile:
		err = sinkFile(c)
	case OpSinkSplice:
		err = s.sinkSplice(c)
	case OpGenerate:
		err = generate(c)
	case OpRR:
		err = requestResponse(c)
	case OpReset:
		err = sendThenReset(c)
	case OpPeer:
		err = s.peer(c)
	case OpSinkSlow:
		err = sinkSlow(c)
	default:
		err = fmt.Errorf("unknown op %q", op[0])
	}
	if err != nil {
		resetConn(c)
	}
}

// echoLoop copies c back to itself with plain reads and writes until EOF,
// then half-closes.
func echoLoop(c *net.TCPConn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return c.CloseWrite()
		}
		if err != nil {
			return err
		}
	}
}

// hashPlain reads r until EOF with plain reads of varying sizes.
func hashPlain(r io.Reader, seed int64) (int64, []byte, error) {
	h := sha256.New()
	buf := make([]byte, maxSinkRead)
	z := newSizer(seed, 1, maxSinkRead)
	var total int64
	for {
		n, err := r.Read(buf[:z.next()])
		h.Write(buf[:n])
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, h.Sum(nil), nil
		}
		if err != nil {
			return total, nil, err
		}
	}
}

func (s *app) sinkPlain(c *net.TCPConn) error {
	n, sum, err := hashPlain(c, s.conns.Add(1))
	if err != nil {
		return err
	}
	_, err = c.Write(sinkReply(n, sum))
	return err
}

// sinkSlow is the slow reader of OpSinkSlow.
func sinkSlow(c *net.TCPConn) error {
	var hdr [slowHeaderLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	pauseAfter := int64(binary.BigEndian.Uint64(hdr[:8]))
	pause := time.Duration(binary.BigEndian.Uint64(hdr[8:])) * time.Millisecond
	sleep := time.Duration(binary.BigEndian.Uint64(hdr[16:])) * time.Microsecond
	h := sha256.New()
	buf := make([]byte, SlowReadSize)
	var total int64
	for {
		n, err := c.Read(buf)
		h.Write(buf[:n])
		total += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if pause > 0 && total >= pauseAfter {
			time.Sleep(pause)
			pause = 0
		}
		if sleep > 0 {
			time.Sleep(sleep)
		}
	}
	_, err := c.Write(sinkReply(total, h.Sum(nil)))
	return err
}

// sinkFile reads c with io.Copy into a temporary file, which Go does with
// splice(2), then hashes the file.
func sinkFile(c *net.TCPConn) error {
	f, err := os.CreateTemp("", "meshsim-sink-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, c)
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	_, err = c.Write(sinkReply(n, h.Sum(nil)))
	return err
}

// sinkSplice relays c into a loopback connection to the internal sink with
// io.Copy (splice socket to socket) and forwards the sink's reply.
func (s *app) sinkSplice(c *net.TCPConn) error {
	d, err := net.Dial("tcp4", s.sinkAddr)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := io.Copy(d, c); err != nil {
		return err
	}
	if err := closeWrite(d); err != nil {
		return err
	}
	reply := make([]byte, SinkReplyLen)
	if _, err := io.ReadFull(d, reply); err != nil {
		return err
	}
	_, err = c.Write(reply)
	return err
}

// serveInternalSink answers OpSinkSplice relays: hash with plain reads.
func (s *app) serveInternalSink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			n, sum, err := hashPlain(c, s.conns.Add(1))
			if err == nil {
				_, _ = c.Write(sinkReply(n, sum))
			}
		}()
	}
}

// generate sends the stream of the requested seed and length.
func generate(c *net.TCPConn) error {
	var req [16]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return err
	}
	n := int64(binary.BigEndian.Uint64(req[:8]))
	seed := int64(binary.BigEndian.Uint64(req[8:]))
	if err := writeStream(c, NewStream(seed), n, newSizer(seed, 1, maxGenWrite)); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	_, err := drain(c)
	return err
}

// writeStream writes n bytes of st with write sizes from z.
func writeStream(w io.Writer, st *Stream, n int64, z *sizer) error {
	buf := make([]byte, z.hi)
	for n > 0 {
		k := int(min(int64(z.next()), n))
		st.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// requestResponse echoes messages of a fixed size until EOF.
func requestResponse(c *net.TCPConn) error {
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(hdr[:])
	if size == 0 || size > 64<<20 {
		return fmt.Errorf("bad message size %d", size)
	}
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			if errors.Is(err, io.EOF) {
				return c.CloseWrite()
			}
			return err
		}
		if _, err := c.Write(buf); err != nil {
			return err
		}
	}
}

// sendThenReset sends N bytes of the ResetSeed stream and resets.
func sendThenReset(c *net.TCPConn) error {
	var req [8]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return err
	}
	n := int64(binary.BigEndian.Uint64(req[:]))
	if err := writeStream(c, NewStream(ResetSeed), n, newSizer(ResetSeed, 1, 64<<10)); err != nil {
		return err
	}
	resetConn(c)
	return nil
}

// peer tells the client who answered and from where it was reached.
func (s *app) peer(c *net.TCPConn) error {
	b, err := json.Marshal(PeerInfo{Pod: s.args.Pod, Remote: c.RemoteAddr().String(), Local: c.LocalAddr().String()})
	if err != nil {
		return err
	}
	if _, err := c.Write(append(b, '\n')); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	_, err = drain(c)
	return err
}
