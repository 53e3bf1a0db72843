package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// MaxSnapLen is the most payload bytes kept per captured message.
const MaxSnapLen = 1024

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

// Capture reads captured messages from the node's ring buffer.
type Capture struct {
	n      *Node
	rd     *ringbuf.Reader
	unlock func()
	boot   time.Time // wall time of ktime 0
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
	c := &Capture{n: n, rd: rd, unlock: unlock, boot: bootTime()}
	cfg := meshCaptureConfig{On: 1, Snaplen: f.SnapLen, Pod: f.Pod, Port: uint32(f.Port)}
	if f.Addr.IsValid() {
		b := f.Addr.Unmap().As16() // IPv4 as ::ffff:a.b.c.d, as in the keys
		for i := range cfg.Ip {
			cfg.Ip[i] = binary.NativeEndian.Uint32(b[i*4:])
		}
		cfg.HasIp = 1
	}
	if err := n.maps.MeshCaptureCfg.Update(uint32(0), cfg, 0); err != nil {
		c.Close()
		return nil, fmt.Errorf("turn capture on: %w", err)
	}
	return c, nil
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

// Read blocks until the next captured message.
func (c *Capture) Read() (CaptureEvent, error) {
	rec, err := c.rd.Read()
	if errors.Is(err, ringbuf.ErrClosed) {
		return CaptureEvent{}, ErrCaptureClosed
	}
	if err != nil {
		return CaptureEvent{}, err
	}
	var ev meshCaptureEvent
	if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &ev); err != nil {
		return CaptureEvent{}, fmt.Errorf("decode capture event: %w", err)
	}
	n := min(ev.Caplen, uint32(len(ev.Data)))
	return CaptureEvent{
		Time:    c.boot.Add(time.Duration(ev.Ts)),
		From:    netip.AddrPortFrom(keyAddr(ev.From.LocalIp), uint16(ev.From.LocalPort)),
		To:      netip.AddrPortFrom(keyAddr(ev.To.LocalIp), uint16(ev.To.LocalPort)),
		FromPod: ev.FromPod,
		ToPod:   ev.ToPod,
		Len:     ev.Len,
		Data:    append([]byte(nil), ev.Data[:n]...),
	}, nil
}

// Close turns capturing off and releases the ring buffer.
func (c *Capture) Close() error {
	err := c.n.maps.MeshCaptureCfg.Update(uint32(0), meshCaptureConfig{}, 0)
	if cerr := c.rd.Close(); err == nil {
		err = cerr
	}
	c.unlock()
	if err != nil {
		return fmt.Errorf("stop capture: %w", err)
	}
	return nil
}

// bootTime is the wall-clock time at which CLOCK_MONOTONIC (bpf_ktime_get_ns)
// was zero.
func bootTime() time.Time {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Now().Add(-time.Duration(ts.Nano()))
}
