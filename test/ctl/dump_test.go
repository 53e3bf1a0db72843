package ctltest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/mesh-accel/mesh-accel/ctl"
	"github.com/mesh-accel/mesh-accel/ctl/pcaptest"
	"github.com/mesh-accel/mesh-accel/internal/testenv"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// startDump runs mesh-accelctl dump in the background until it ends or the
// returned stop is called; it returns once the capture is on.
func (e *env) startDump(args ...string) (stop func() result) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testenv.SyncBuffer{}
	done := make(chan result, 1)
	go func() { done <- e.ctlContext(ctx, stderr, append([]string{"dump"}, args...)...) }()
	stderr.WaitFor(e.t, "capturing redirected messages")
	return func() result {
		cancel()
		return <-done
	}
}

// stream is the first n bytes of the simulator's stream for seed.
func stream(seed int64, n int) []byte {
	b := make([]byte, n)
	sim.NewStream(seed).Read(b)
	return b
}

// The pcap file holds exactly what the app sent to its sidecar and what
// came back, as TCP segments whose sequence numbers place every captured
// byte at its offset in the stream; tcpdump reads it as that conversation.
func TestDumpPcap(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	file := filepath.Join(t.TempDir(), "echo.pcap")
	stop := e.startDump("--pod", "shop/a", "--port", "15001", "--snaplen", "1024", "-w", file, "-o", "json")
	const seed, size = 42, 256 << 10
	before, err := e.node.Counters()
	if err != nil {
		t.Fatal(err)
	}
	e.run(a, sim.ClientSpec{Mode: sim.ModeEcho, Target: b.AppTarget(false), Bytes: size, Seed: seed,
		MinWrite: 1, MaxWrite: 1023})
	e.waitNoConns()
	after, err := e.node.Counters()
	if err != nil {
		t.Fatal(err)
	}
	held := after.Sub(before)["flow_control_held"]
	r := stop()
	if r.code != ctl.ExitOK {
		t.Fatalf("dump: exit %d: %s", r.code, r.stderr)
	}
	var sum struct{ Messages, Dropped int }
	if err := json.Unmarshal([]byte(r.stdout), &sum); err != nil {
		t.Fatalf("summary: %v: %q", err, r.stdout)
	}
	if sum.Dropped != 0 || sum.Messages == 0 {
		t.Fatalf("dump summary %+v: the comparison needs every message", sum)
	}

	up, down, pkts := reassemble(t, file, a.IPv4.String())
	// Towards the sidecar: the op byte and the stream, every message whole.
	// Unless flow control held the direction: while the sidecar has not
	// started reading (its upstream's TLS handshake), the app's 256 KiB
	// reach the receiver's limit (2 x its 128 KiB receive buffer) and the
	// last writes take the stack, where the dump does not see them. Every
	// byte captured is still at its place in the stream.
	want := append([]byte{sim.OpEcho}, stream(seed, size)...)
	if !up.matches(want) || len(up.data) > len(want) {
		t.Errorf("app -> sidecar: %d bytes captured, not all of them at their place in the stream", len(up.data))
	}
	if held == 0 && (!bytes.Equal(up.data, want) || up.missing != 0) {
		t.Errorf("app -> sidecar: %d bytes (%d not captured), want the %d sent (equal prefix: %v), no flow-control hold",
			len(up.data), up.missing, len(want), bytes.HasPrefix(want, up.data[:min(len(up.data), len(want))]))
	}
	if held > 0 {
		t.Logf("flow control held the app's direction %d times: %d of %d bytes captured", held, len(up.data)-up.missing, len(want))
	}
	// Back to the app: the echo, in messages of the sidecar's read sizes,
	// of which the first 1024 bytes each are captured, up to the client's
	// half-close (after it the echo takes the stack: the data path stops
	// redirecting into a socket that sent its FIN).
	if want := stream(seed, size); len(down.data) > size || !down.matches(want) {
		t.Errorf("sidecar -> app: %d bytes, want at most %d matching the stream", len(down.data), size)
	}

	out := pcaptest.Tcpdump(t, "-nn", "-S", "-r", file)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != pkts {
		t.Errorf("tcpdump shows %d lines for %d packets", len(lines), pkts)
	}
	first := fmt.Sprintf("IP %s.", a.IPv4)
	if !strings.Contains(lines[0], first) || !strings.Contains(lines[0], "> 127.0.0.1.15001: Flags [P.], seq 1:2, ack 1,") {
		t.Errorf("tcpdump's first segment: %q (want the op byte from %s)", lines[0], a.IPv4)
	}
}

// direction is one direction of the captured conversation, reassembled.
type direction struct {
	data    []byte // by stream offset (uncaptured bytes are zero)
	have    []bool // which bytes were captured
	missing int    // bytes not captured
}

// put places payload, part of a segment of segLen bytes, at offset off.
func (d *direction) put(off, segLen int, payload []byte) {
	if end := off + segLen; end > len(d.data) {
		d.data = append(d.data, make([]byte, end-len(d.data))...)
		d.have = append(d.have, make([]bool, end-len(d.have))...)
	}
	copy(d.data[off:], payload)
	for i := range payload {
		d.have[off+i] = true
	}
	d.missing += segLen - len(payload)
}

// matches reports whether every captured byte equals want at its offset.
func (d *direction) matches(want []byte) bool {
	for i, ok := range d.have {
		if ok && (i >= len(want) || d.data[i] != want[i]) {
			return false
		}
	}
	return true
}

// reassemble reads a pcap file and rebuilds the two directions of the
// conversation between app (its address) and its sidecar from the TCP
// sequence numbers.
func reassemble(t *testing.T, file, app string) (up, down *direction, packets int) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	up, down = &direction{}, &direction{}
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		packets++
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("packet %d is not IPv4/TCP: %v", packets, p)
		}
		segLen := ci.Length - 14 - 40
		d := down
		if ip.SrcIP.String() == app {
			d = up
		}
		d.put(int(tcp.Seq-1), segLen, tcp.Payload)
	}
	return up, down, packets
}

// Live output: one line per message with both ends, the pod and the
// length, then the hex/ASCII dump; -c ends the capture.
func TestDumpLive(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", trustedAll)
	b := e.pod("b", trustedAll)
	stop := e.startDump("--pod", "shop/a", "--port", "15001", "-c", "5")
	e.run(a, sim.ClientSpec{Mode: sim.ModeEcho, Target: b.AppTarget(false), Bytes: 64 << 10, Seed: 7})
	r := stop()
	if r.code != ctl.ExitOK {
		t.Fatalf("dump: exit %d: %s", r.code, r.stderr)
	}
	headers := 0
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, " len ") {
			headers++
			if !strings.Contains(l, "127.0.0.1:15001") || !strings.Contains(l, "[shop/a]") {
				t.Errorf("message line %q", l)
			}
		}
	}
	first := fmt.Sprintf("%s:", a.IPv4)
	if headers != 5 || !strings.Contains(r.stdout, first) || !strings.Contains(r.stdout, "  0000  45 ") {
		t.Errorf("want 5 messages, the first being the op byte 'E' (0x45) from %s:\n%s", a.IPv4, r.stdout)
	}
	if !strings.Contains(r.stderr, "5 messages captured") {
		t.Errorf("summary: %s", r.stderr)
	}
	// One capture at a time.
	stop = e.startDump()
	if r := e.ctl("dump", "-c", "1"); r.code != ctl.ExitError || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second dump: exit %d, %s", r.code, r.stderr)
	}
	if r := stop(); r.code != ctl.ExitOK {
		t.Errorf("first dump: exit %d: %s", r.code, r.stderr)
	}
}
