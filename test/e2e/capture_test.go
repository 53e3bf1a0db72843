package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
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

// envCaptureRole makes the test binary a capture that never ends (its
// argument is the node state's root under bpffs), to be killed.
const envCaptureRole = "MESH_ACCEL_TEST_CAPTURE"

func captureRole(root string) {
	n, err := bpf.OpenNode(bpf.Options{Root: root})
	if err == nil {
		_, err = n.StartCapture(bpf.CaptureFilter{})
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("capturing")
	select {}
}

// A capture whose reader is killed (SIGKILL: no Close) stops within its
// lease: the data path stops capturing, and a new capture can start.
func TestCaptureKilledReaderStops(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envCaptureRole+"="+filepath.Base(filepath.Dir(e.node.Dir())))
	out := &testenv.SyncBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	out.WaitFor(t, "capturing")
	spec := sim.ClientSpec{Mode: sim.ModeBulk, Target: b.AppTarget(false), Bytes: 1 << 20}
	_, c := e.run(a, spec)
	wantPositive(t, c, "capture_events")

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	time.Sleep(bpf.CaptureLease + time.Second)
	_, c = e.run(a, spec)
	wantPositive(t, c, "bytes_redirected")
	want(t, c, map[string]uint64{"capture_events": 0})
	cp, err := e.node.StartCapture(bpf.CaptureFilter{})
	if err != nil {
		t.Fatalf("capture after the killed one: %v", err)
	}
	cp.Close()
}

// A capture of pod B after an earlier capture of pod A that stopped after
// one message (dump -c 1, leaving A's messages in the ring) shows only B's
// messages.
func TestCaptureOnlyItsPod(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	bulk := func(from, to *sim.Pod) {
		e.run(from, sim.ClientSpec{Mode: sim.ModeBulk, Target: to.AppTarget(false), Bytes: 256 << 10, MaxWrite: 4 << 10})
	}
	first, err := e.node.StartCapture(bpf.CaptureFilter{Pod: a.CgroupID})
	if err != nil {
		t.Fatal(err)
	}
	bulk(a, b) // a's messages; b's too: a talks to b
	if _, err := first.Read(); err != nil {
		t.Fatal(err)
	}
	first.Close() // one read, the rest left in the ring

	c := e.pod("c", true, &trustedAll)
	second, err := e.node.StartCapture(bpf.CaptureFilter{Pod: c.CgroupID})
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	bulk(a, b)
	bulk(c, b)
	second.SetDeadline(time.Now().Add(2 * time.Second))
	n := 0
	for {
		ev, err := second.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.FromPod != c.CgroupID && ev.ToPod != c.CgroupID {
			t.Fatalf("capture of pod c returned a message from pod %d to pod %d", ev.FromPod, ev.ToPod)
		}
		n++
	}
	if n == 0 {
		t.Fatal("capture of pod c returned nothing")
	}
}
