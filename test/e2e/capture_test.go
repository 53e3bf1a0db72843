package e2e

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// The capture sees exactly the bytes the app sent towards its sidecar.
func TestCaptureRedirectedBytes(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	c, err := e.node.StartCapture(bpf.CaptureFilter{Pod: a.CgroupID, Port: 15001, SnapLen: bpf.MaxSnapLen})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := e.node.StartCapture(bpf.CaptureFilter{}); !errors.Is(err, bpf.ErrCaptureBusy) {
		t.Fatalf("second capture: %v, want ErrCaptureBusy", err)
	}
	const size, seed = 64 << 10, 42
	e.run(a, sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: size, Seed: seed,
		MinWrite: 1, MaxWrite: int(bpf.MaxSnapLen) - 1})

	var got bytes.Buffer
	c.SetDeadline(time.Now().Add(2 * time.Second))
	for {
		ev, err := c.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.To.Port() == 15001 {
			if int(ev.Len) != len(ev.Data) {
				t.Fatalf("message of %d bytes captured as %d", ev.Len, len(ev.Data))
			}
			got.Write(ev.Data)
		}
	}
	want := make([]byte, 1+size)
	want[0] = sim.OpSink
	sim.NewStream(seed).Read(want[1:])
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("captured %d bytes, want the %d sent (equal prefix: %v)", got.Len(), len(want),
			bytes.HasPrefix(want, got.Bytes()))
	}
	if n := e.counters()["capture_dropped"]; n != 0 {
		t.Errorf("capture_dropped = %d", n)
	}
}

// Drain moves live pairs back to the stack without losing a byte.
func TestDrainLiveTraffic(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	done := make(chan *sim.ClientResult)
	go func() {
		done <- a.RunTestClient(t, sim.ClientSpec{Mode: sim.ModeEcho, Target: b.AppTarget(false), Streams: 4,
			Bytes: 256 << 20, MinWrite: 1, MaxWrite: 1 << 20})
	}()
	drained := 0
	for {
		select {
		case res := <-done:
			if !res.OK {
				t.Fatalf("echo across drains: %v", res.Errors)
			}
			if drained == 0 {
				t.Fatal("nothing was drained while the streams ran")
			}
			e.waitNoConns()
			return
		case <-time.After(100 * time.Millisecond):
			n, err := e.node.Drain(0)
			if err != nil {
				t.Fatal(err)
			}
			drained += n
		}
	}
}
