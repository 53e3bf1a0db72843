package sim

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"time"
)

// churnRequest is the payload size of one churn connection.
const churnRequest = 64

// runChurn opens Count connections with Concurrency workers.
func runChurn(spec ClientSpec, col *collector) {
	var next atomic.Int64
	start := time.Now()
	parallel(spec.Concurrency, func(int) {
		var h histogram
		for {
			i := next.Add(1) - 1
			if i >= int64(spec.Count) {
				break
			}
			t0 := time.Now()
			if err := churnOne(spec, spec.Seed+i, col); err != nil {
				col.fail("connection %d: %v", i, err)
				continue
			}
			h.record(time.Since(t0))
		}
		col.merge(&h)
	})
	col.rate(start)
}

// churnOne writes its request right after connect, half-closes, and expects
// the full echo followed by EOF.
func churnOne(spec ClientSpec, seed int64, col *collector) error {
	c, err := dial(spec, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	req := make([]byte, 1+churnRequest)
	req[0] = OpEcho
	NewStream(seed).Read(req[1:])
	if _, err := c.Write(req); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read after %d bytes: %w", len(got), err)
	}
	if !bytes.Equal(got, req[1:]) {
		col.mismatch("seed %d: echo of %d bytes differs (got %d bytes)", seed, churnRequest, len(got))
		return nil
	}
	col.done(churnRequest, nil)
	return nil
}

// runRR runs Streams ping-pong connections of Size-byte messages for Duration.
func runRR(spec ClientSpec, col *collector) {
	start := time.Now()
	var trips atomic.Int64
	parallel(spec.Streams, func(i int) {
		n, err := rrOne(spec, spec.Seed+int64(i), col)
		trips.Add(n)
		if err != nil {
			col.fail("stream %d: %v", i, err)
		}
	})
	col.mu.Lock()
	col.res.RatePerSec = float64(trips.Load()) / time.Since(start).Seconds()
	col.mu.Unlock()
}

func rrOne(spec ClientSpec, seed int64, col *collector) (int64, error) {
	c, err := dial(spec, spec.Duration)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	hdr := binary.BigEndian.AppendUint32([]byte{OpRR}, uint32(spec.Size))
	if _, err := c.Write(hdr); err != nil {
		return 0, err
	}
	msg, got := make([]byte, spec.Size), make([]byte, spec.Size)
	NewStream(seed).Read(msg)
	var h histogram
	var trips int64
	for end := time.Now().Add(spec.Duration); time.Now().Before(end); trips++ {
		t0 := time.Now()
		if _, err := c.Write(msg); err != nil {
			return trips, err
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return trips, err
		}
		h.record(time.Since(t0))
		if !bytes.Equal(got, msg) {
			col.mismatch("seed %d: response %d differs", seed, trips)
			return trips, nil
		}
	}
	if err := c.CloseWrite(); err != nil {
		return trips, err
	}
	if err := expectEOF(c); err != nil {
		return trips, err
	}
	col.done(trips*int64(spec.Size), &h)
	return trips, nil
}

// runConnRate connects, echoes one byte and closes, sequentially, for
// Duration.
func runConnRate(spec ClientSpec, col *collector) {
	start := time.Now()
	var h histogram
	for i := int64(0); time.Since(start) < spec.Duration; i++ {
		t0 := time.Now()
		if err := connRateOne(spec, byte(i)); err != nil {
			col.fail("connection %d: %v", i, err)
			continue
		}
		h.record(time.Since(t0))
		col.done(1, nil)
	}
	col.merge(&h)
	col.rate(start)
}

func connRateOne(spec ClientSpec, b byte) error {
	c, err := dial(spec, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte{OpEcho, b}); err != nil {
		return err
	}
	var got [1]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return err
	}
	if got[0] != b {
		return fmt.Errorf("echo %d, want %d", got[0], b)
	}
	return nil
}

// runReset asks for Bytes bytes followed by a reset and checks that what
// arrived is a prefix of the stream.
func runReset(spec ClientSpec, col *collector) {
	c, err := dial(spec, 0)
	if err != nil {
		col.fail("%v", err)
		return
	}
	defer c.Close()
	req := binary.BigEndian.AppendUint64([]byte{OpReset}, uint64(spec.Bytes))
	if _, err := c.Write(req); err != nil {
		col.fail("write: %v", err)
		return
	}
	v := newVerifier(ResetSeed)
	err = readVerify(c, v, newSizer(spec.Seed, 1, maxSinkRead))
	col.mu.Lock()
	col.res.ResetSeen = errors.Is(err, syscall.ECONNRESET)
	col.res.ReceivedBeforeReset = v.off
	col.res.PrefixOK = v.first < 0 && v.off <= spec.Bytes
	col.mu.Unlock()
	switch {
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		col.fail("read after %d bytes: %v", v.off, err)
	case v.first >= 0 || v.off > spec.Bytes:
		col.mismatch("%s (received %d of %d bytes)", v.describe(-1), v.off, spec.Bytes)
	default:
		col.done(v.off, nil)
	}
}

// runPeer asks the app who it is and what peer address it sees.
func runPeer(spec ClientSpec, col *collector) {
	c, err := dial(spec, 0)
	if err != nil {
		col.fail("%v", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte{OpPeer}); err != nil {
		col.fail("write: %v", err)
		return
	}
	if err := c.CloseWrite(); err != nil {
		col.fail("close write: %v", err)
		return
	}
	b, err := io.ReadAll(c)
	if err != nil {
		col.fail("read: %v", err)
		return
	}
	var p PeerInfo
	if err := json.Unmarshal(b, &p); err != nil {
		col.fail("bad peer reply %q: %v", b, err)
		return
	}
	col.mu.Lock()
	col.res.Peer, col.res.Local, col.res.Remote = &p, c.LocalAddr().String(), c.RemoteAddr().String()
	col.mu.Unlock()
	col.done(int64(len(b)), nil)
}
