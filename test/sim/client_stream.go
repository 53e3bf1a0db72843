package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// slowHeaderLen is the length of OpSinkSlow's header.
const slowHeaderLen = 24

// runBulk sends Streams seeded streams in parallel to the sink op.
func runBulk(spec ClientSpec, col *collector) {
	parallel(spec.Streams, func(i int) {
		if err := bulkOne(spec, spec.Seed+int64(i), col); err != nil {
			col.fail("stream %d: %v", i, err)
		}
	})
}

// bulkOne starts writing right after connect returns: the op byte travels
// with the first chunk of data.
func bulkOne(spec ClientSpec, seed int64, col *collector) error {
	c, err := dial(spec, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	st, z, h := NewStream(seed), newSizer(seed, spec.MinWrite, spec.MaxWrite), sha256.New()
	buf := make([]byte, 1+slowHeaderLen+spec.MaxWrite)
	buf[0] = spec.Op
	off, left := 1, spec.Bytes
	if spec.Op == OpSinkSlow {
		binary.BigEndian.PutUint64(buf[1:], uint64(spec.PauseAfter))
		binary.BigEndian.PutUint64(buf[9:], uint64(spec.Pause.Milliseconds()))
		binary.BigEndian.PutUint64(buf[17:], uint64(spec.ReadSleep.Microseconds()))
		off += slowHeaderLen
	}
	for first := true; first || left > 0; first = false {
		k := int(min(int64(z.next()), left))
		chunk := buf[off : off+k]
		st.Read(chunk)
		h.Write(chunk)
		if _, err := c.Write(buf[:off+k]); err != nil {
			return fmt.Errorf("write after %d bytes: %w", spec.Bytes-left, err)
		}
		left -= int64(k)
		buf, off = buf[off:], 0
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	n, sum, err := readSinkReply(c)
	if err != nil {
		return err
	}
	if want := h.Sum(nil); n != spec.Bytes || !bytes.Equal(sum, want) {
		col.mismatch("seed %d op %q: server got %d bytes sha256 %x, sent %d bytes sha256 %x",
			seed, spec.Op, n, sum[:8], spec.Bytes, want[:8])
		return nil
	}
	col.done(n, nil)
	return nil
}

// runGenerate asks for Streams generated streams and verifies them.
func runGenerate(spec ClientSpec, col *collector) {
	parallel(spec.Streams, func(i int) {
		if err := generateOne(spec, spec.Seed+int64(i), col); err != nil {
			col.fail("stream %d: %v", i, err)
		}
	})
}

func generateOne(spec ClientSpec, seed int64, col *collector) error {
	c, err := dial(spec, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	req := []byte{OpGenerate}
	req = binary.BigEndian.AppendUint64(req, uint64(spec.Bytes))
	req = binary.BigEndian.AppendUint64(req, uint64(seed))
	if _, err := c.Write(req); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	v := newVerifier(seed)
	if err := readVerify(c, v, newSizer(seed+1, 1, maxSinkRead)); err != nil {
		return fmt.Errorf("after %d bytes: %w", v.off, err)
	}
	if msg := v.describe(spec.Bytes); msg != "" {
		col.mismatch("seed %d: %s", seed, msg)
		return nil
	}
	col.done(v.off, nil)
	return nil
}

// readVerify reads r until EOF with read sizes from z, checking every byte.
func readVerify(r io.Reader, v *verifier, z *sizer) error {
	buf := make([]byte, z.hi)
	for {
		n, err := r.Read(buf[:z.next()])
		v.check(buf[:n])
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// runEcho sends Streams streams to OpEcho and verifies the echoes while
// sending.
func runEcho(spec ClientSpec, col *collector) {
	parallel(spec.Streams, func(i int) {
		if err := echoOne(spec, spec.Seed+int64(i), col); err != nil {
			col.fail("stream %d: %v", i, err)
		}
	})
}

func echoOne(spec ClientSpec, seed int64, col *collector) error {
	c, err := dial(spec, 0)
	if err != nil {
		return err
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() { werr <- echoWrite(c, spec, seed) }()
	v := newVerifier(seed)
	rerr := readVerify(c, v, newSizer(seed+1, 1, maxSinkRead))
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return fmt.Errorf("read after %d bytes: %w", v.off, rerr)
	}
	if msg := v.describe(spec.Bytes); msg != "" {
		col.mismatch("seed %d: %s", seed, msg)
		return nil
	}
	col.done(v.off, nil)
	return nil
}

// echoWrite writes the op, the stream and half-closes.
func echoWrite(c *net.TCPConn, spec ClientSpec, seed int64) error {
	if _, err := c.Write([]byte{OpEcho}); err != nil {
		return err
	}
	if err := writeStream(c, NewStream(seed), spec.Bytes, newSizer(seed, spec.MinWrite, spec.MaxWrite)); err != nil {
		return err
	}
	return c.CloseWrite()
}
