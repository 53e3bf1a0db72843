package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
)

// Op codes: the first byte a client sends on a connection to the app server.
const (
	// OpEcho copies everything back until EOF, then half-closes.
	OpEcho byte = 'E'
	// OpSink reads until EOF with varying plain reads and replies with the
	// byte count and SHA-256 of what it read ([SinkReplyLen] bytes).
	OpSink byte = 'S'
	// OpSinkFile is OpSink reading with io.Copy into a temporary file (splice
	// from the socket).
	OpSinkFile byte = 'F'
	// OpSinkSplice is OpSink relayed through a second, loopback connection
	// with io.Copy between the two sockets (splice socket to socket).
	OpSinkSplice byte = 'C'
	// OpGenerate reads an 8-byte length N and an 8-byte seed, sends N bytes of
	// the stream for that seed with varying write sizes, then half-closes.
	OpGenerate byte = 'G'
	// OpRR reads a 4-byte message size s, then echoes messages of exactly s
	// bytes until EOF.
	OpRR byte = 'R'
	// OpReset reads an 8-byte length N, sends N bytes of the stream for seed
	// [ResetSeed], then closes with SO_LINGER 0 (the peer sees a reset).
	OpReset byte = 'X'
	// OpPeer replies with one JSON line ([PeerInfo]): the app's pod name and
	// the addresses the app server sees on the connection.
	OpPeer byte = 'P'
	// OpSinkSlow is OpSink read at a pace: a 24-byte header (big-endian:
	// pause-after byte count, pause in milliseconds, sleep after each read
	// in microseconds), then reads of [SlowReadSize] bytes, each followed
	// by the sleep; once pause-after bytes were read it stops reading for
	// the pause, once.
	OpSinkSlow byte = 'L'
)

// SlowReadSize is the read size of OpSinkSlow; with a 1 ms sleep after
// each read the reader takes about 60 MB/s.
const SlowReadSize = 64 << 10

// ResetSeed is the seed of the stream OpReset sends.
const ResetSeed = 1

// SinkReplyLen is the length of the reply of the sink ops: an 8-byte
// big-endian byte count followed by a 32-byte SHA-256.
const SinkReplyLen = 8 + sha256.Size

// PeerInfo is the reply to OpPeer.
type PeerInfo struct {
	Pod    string // name of the pod the app server runs in
	Remote string // remote address of the connection as the app sees it
	Local  string // local address of the connection as the app sees it
}

// Stream is the deterministic byte stream of a seed (splitmix64, 8 bytes per
// step), shared by the app server and the client. Reading it in any chunking
// yields the same bytes.
type Stream struct {
	state uint64
	buf   [8]byte
	left  int // unread bytes at the end of buf
}

// NewStream returns the stream of seed.
func NewStream(seed int64) *Stream {
	return &Stream{state: uint64(seed) ^ 0x6a09e667f3bcc908}
}

func (s *Stream) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	z := s.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Read fills p with the next len(p) bytes of the stream; it never fails.
func (s *Stream) Read(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && s.left > 0 {
		p[0] = s.buf[8-s.left]
		p, s.left = p[1:], s.left-1
	}
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, s.next())
		p = p[8:]
	}
	if len(p) > 0 {
		binary.LittleEndian.PutUint64(s.buf[:], s.next())
		copy(p, s.buf[:])
		s.left = 8 - len(p)
	}
	return n, nil
}

// sizer picks I/O sizes in [lo, hi], log-uniformly (every power of two is as
// likely as any other), so that both tiny and large reads/writes occur.
type sizer struct {
	r      *rand.Rand
	lo, hi int
}

func newSizer(seed int64, lo, hi int) *sizer {
	lo = max(lo, 1)
	hi = max(hi, lo)
	return &sizer{r: rand.New(rand.NewPCG(uint64(seed), 0x5eed)), lo: lo, hi: hi}
}

func (z *sizer) next() int {
	if z.hi == z.lo {
		return z.lo
	}
	elo, ehi := bits.Len(uint(z.lo))-1, bits.Len(uint(z.hi))-1
	e := elo + z.r.IntN(ehi-elo+1)
	a, b := max(z.lo, 1<<e), min(z.hi, 1<<(e+1)-1)
	return a + z.r.IntN(b-a+1)
}

// sinkReply encodes the reply of the sink ops.
func sinkReply(n int64, sum []byte) []byte {
	b := make([]byte, 0, SinkReplyLen)
	b = binary.BigEndian.AppendUint64(b, uint64(n))
	return append(b, sum...)
}

// readSinkReply reads a sink reply and expects EOF after it.
func readSinkReply(r io.Reader) (int64, []byte, error) {
	var b [SinkReplyLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, fmt.Errorf("read sink reply: %w", err)
	}
	if err := expectEOF(r); err != nil {
		return 0, nil, err
	}
	return int64(binary.BigEndian.Uint64(b[:8])), b[8:], nil
}

// expectEOF reads once more and fails unless the peer has closed.
func expectEOF(r io.Reader) error {
	var one [1]byte
	n, err := r.Read(one[:])
	if n > 0 {
		return errors.New("unexpected data after the end of the reply")
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err == nil {
		return errors.New("no EOF after the reply")
	}
	return fmt.Errorf("expect EOF: %w", err)
}

// drain reads r until EOF or an error, discarding the data.
func drain(r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// closeWrite half-closes a TCP connection.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*net.TCPConn); ok {
		return tc.CloseWrite()
	}
	return errors.New("not a TCP connection")
}

// resetConn closes c with SO_LINGER 0, so that the peer sees a reset.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
