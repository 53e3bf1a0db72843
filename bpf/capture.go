package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// MaxSnapLen is the most payload bytes kept per captured message.
const MaxSnapLen = uint32(meshLimitMAX_SNAPLEN)

// DefaultSnapLen is the payload bytes kept when CaptureFilter.SnapLen is 0.
const DefaultSnapLen = 256

var (
	// ErrCaptureBusy is returned when another capture runs on the node.
	ErrCaptureBusy = errors.New("a capture is already running on this node")
	// ErrCaptureClosed is returned by Read after Close.
	ErrCaptureClosed = errors.New("capture closed")
)

// CaptureFilter selects the redirected messages to capture. Zero fields
// match anything.
type CaptureFilter struct {
	Pod     uint64     // pod cgroup id of the sender or the receiver
	Addr    netip.Addr // the sender's or the receiver's address
	Port    uint16     // the sender's or the receiver's port
	SnapLen uint32     // payload bytes kept per message, 1..MaxSnapLen
}

// CaptureEvent is one redirected message.
type CaptureEvent struct {
	Time           time.Time      // when sk_msg redirected it
	From, To       netip.AddrPort // the sender's and the receiver's local addresses
	FromPod, ToPod uint64
	Len            uint32 // message length
	Data           []byte // its first min(Len, SnapLen) bytes
}

// CaptureLease is how long a capture stays on without its reader renewing
// it: a reader killed without Close (SIGKILL) leaves capture off after at
// most this long. A live Capture renews it every CaptureLease/4.
const CaptureLease = 4 * time.Second

// Capture reads captured messages from the node's ring buffer.
type Capture struct {
	n      *Node
	rd     *ringbuf.Reader
	unlock func()
	boot   time.Time // wall time of ktime 0
	filter CaptureFilter
	start  time.Time // events from before are an earlier capture's

	mu   sync.Mutex
	cfg  meshCaptureConfig // what is in force; On 0 once stopped
	stop chan struct{}     // ends the lease renewal

	closeOnce sync.Once
	closeErr  error
}

// StartCapture turns capturing on with filter f. Only one capture runs per
// node at a time; Close turns it off again.
func (n *Node) StartCapture(f CaptureFilter) (*Capture, error) {
	if f.SnapLen == 0 {
		f.SnapLen = DefaultSnapLen
	}
	if f.SnapLen > MaxSnapLen {
		return nil, fmt.Errorf("snap length %d: at most %d", f.SnapLen, MaxSnapLen)
	}
	unlock, err := n.lockCapture()
	if err != nil {
		return nil, err
	}
	rd, err := ringbuf.NewReader(n.maps.MeshCapture)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open capture ring: %w", err)
	}
	c := &Capture{n: n, rd: rd, unlock: unlock, boot: bootTime(), filter: f, start: time.Now(),
		stop: make(chan struct{})}
	// What an earlier capture left in the ring (a reader that stopped
	// early, or was killed) is not this capture's.
	if err := c.drain(); err != nil {
		c.Close()
		return nil, err
	}
	c.cfg = meshCaptureConfig{On: 1, Snaplen: f.SnapLen, Pod: f.Pod, Port: uint32(f.Port)}
	if f.Addr.IsValid() {
		c.cfg.Ip, c.cfg.HasIp = addrWords(f.Addr.Unmap()), 1
	}
	if err := c.renew(); err != nil {
		c.Close()
		return nil, fmt.Errorf("turn capture on: %w", err)
	}
	go c.keepLease()
	return c, nil
}

// drain discards the records in the ring.
func (c *Capture) drain() error {
	c.rd.SetDeadline(time.Now())
	defer c.rd.SetDeadline(time.Time{})
	for {
		_, err := c.rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("drain capture ring: %w", err)
		}
	}
}

// renew writes the configuration with a fresh lease.
func (c *Capture) renew() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.On == 0 {
		return nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return err
	}
	c.cfg.Expires = uint64(ts.Nano()) + uint64(CaptureLease)
	return c.n.maps.MeshCaptureCfg.Update(uint32(0), c.cfg, 0)
}

func (c *Capture) keepLease() {
	t := time.NewTicker(CaptureLease / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			_ = c.renew() // a failed renewal lets the lease run out: capture off
		}
	}
}

// wants re-checks an event against the filter: the ring may hold events of
// another capture that raced this one's start.
func (c *Capture) wants(ev CaptureEvent) bool {
	f := c.filter
	switch {
	case ev.Time.Before(c.start):
		return false
	case f.Pod != 0 && ev.FromPod != f.Pod && ev.ToPod != f.Pod:
		return false
	case f.Port != 0 && ev.From.Port() != f.Port && ev.To.Port() != f.Port:
		return false
	case f.Addr.IsValid() && ev.From.Addr() != f.Addr.Unmap() && ev.To.Addr() != f.Addr.Unmap():
		return false
	}
	return true
}

// lockCapture takes the node's capture lock, a directory of its own so that
// a capture never holds up OpenNode.
func (n *Node) lockCapture() (func(), error) {
	dir := filepath.Join(n.dir, "capture")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("capture lock: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("capture lock: %w", err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrCaptureBusy
		}
		return nil, fmt.Errorf("capture lock: %w", err)
	}
	return func() { unix.Close(fd) }, nil
}

// SetDeadline makes Read return an error wrapping os.ErrDeadlineExceeded
// once t has passed.
func (c *Capture) SetDeadline(t time.Time) { c.rd.SetDeadline(t) }

// Read blocks until the next captured message that matches the filter.
func (c *Capture) Read() (CaptureEvent, error) {
	for {
		rec, err := c.rd.Read()
		if errors.Is(err, ringbuf.ErrClosed) {
			return CaptureEvent{}, ErrCaptureClosed
		}
		if err != nil {
			return CaptureEvent{}, err
		}
		ev, err := decodeCaptureEvent(rec.RawSample, c.boot)
		if err != nil {
			return ev, err
		}
		if c.wants(ev) {
			ev.Data = ev.Data[:min(len(ev.Data), int(c.filter.SnapLen))]
			return ev, nil
		}
	}
}

// Offsets in struct capture_event (c/mesh_accel.h).
const (
	evFrom    = 8
	evTo      = evFrom + sockKeySize
	evFromPod = evTo + sockKeySize
	evToPod   = evFromPod + 8
	evLen     = evToPod + 8
	evCaplen  = evLen + 4
	evData    = evCaplen + 4
	// sockKeySize is sizeof(struct sock_key).
	sockKeySize = 48
)

// decodeCaptureEvent reads a ring buffer record by offset: decoding the
// whole 1 KiB struct per message would slow the reader down.
func decodeCaptureEvent(b []byte, boot time.Time) (CaptureEvent, error) {
	if len(b) < evData {
		return CaptureEvent{}, fmt.Errorf("capture record of %d bytes, want at least %d", len(b), evData)
	}
	ne := binary.NativeEndian
	caplen := min(int(ne.Uint32(b[evCaplen:])), len(b)-evData, int(MaxSnapLen))
	return CaptureEvent{
		Time:    boot.Add(time.Duration(ne.Uint64(b))),
		From:    keyLocal(b[evFrom:]),
		To:      keyLocal(b[evTo:]),
		FromPod: ne.Uint64(b[evFromPod:]),
		ToPod:   ne.Uint64(b[evToPod:]),
		Len:     ne.Uint32(b[evLen:]),
		Data:    append([]byte(nil), b[evData:evData+caplen]...),
	}, nil
}

// keyLocal decodes the local address and port of a struct sock_key.
func keyLocal(b []byte) netip.AddrPort {
	var ip [16]byte
	copy(ip[:], b[:16])
	port := binary.NativeEndian.Uint32(b[32:])
	return netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), uint16(port))
}

// Stop turns capturing off and keeps the ring open, so that Read can still
// return what was captured until then (read with a deadline to drain it).
func (c *Capture) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg.On == 0 {
		return nil
	}
	c.cfg = meshCaptureConfig{}
	close(c.stop)
	if err := c.n.maps.MeshCaptureCfg.Update(uint32(0), c.cfg, 0); err != nil {
		return fmt.Errorf("stop capture: %w", err)
	}
	return nil
}

// Close turns capturing off and releases the ring buffer. It may be called
// more than once.
func (c *Capture) Close() error {
	c.closeOnce.Do(func() {
		err := c.Stop()
		if cerr := c.rd.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close capture ring: %w", cerr)
		}
		c.unlock()
		c.closeErr = err
	})
	return c.closeErr
}

// bootTime is the wall-clock time at which CLOCK_MONOTONIC (bpf_ktime_get_ns)
// was zero.
func bootTime() time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
}
