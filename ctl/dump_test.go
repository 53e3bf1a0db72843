package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/ctl/pcaptest"
)

func captured() []bpf.CaptureEvent {
	a := event(addrA, sideA, "GET /cart HTTP/1.1\r\nHost: cart\r\n\r\n", 0)
	a.FromPod, a.ToPod = 100, 100
	b := event(inbound, appB, "\x00\x01binary", 300)
	b.FromPod, b.ToPod = 100, 200
	return []bpf.CaptureEvent{a, b}
}

func TestDumpLive(t *testing.T) {
	eng := newFakeEngine()
	newFakeCapture(eng, captured()...)
	r := runCtl(t, eng, defaultRecords(t), "dump", "-c", "2", "--pod", "shop/cart", "--port", "15001", "--snaplen", "64")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := `03:04:05.000006 10.0.0.2:40000 > 127.0.0.1:15001 [shop/cart] len 34
  0000  47 45 54 20 2f 63 61 72  74 20 48 54 54 50 2f 31  |GET /cart HTTP/1|
  0010  2e 31 0d 0a 48 6f 73 74  3a 20 63 61 72 74 0d 0a  |.1..Host: cart..|
  0020  0d 0a                                             |..|
03:04:05.000006 127.0.0.6:41000 > 10.0.0.3:8080 [shop/cart > shop/pay] len 300
  0000  00 01 62 69 6e 61 72 79                           |..binary|
  ... 292 more bytes not captured
`
	if r.stdout != want {
		t.Errorf("live output:\n%s\nwant:\n%s", r.stdout, want)
	}
	if want := "StartCapture({Pod:100 Addr:invalid IP Port:15001 SnapLen:64})"; eng.calls[0] != want {
		t.Errorf("capture filter %q, want %q", eng.calls[0], want)
	}
	for _, want := range []string{"capturing redirected messages (pod shop/cart, port 15001), 64 bytes each",
		"2 messages captured (334 B); 0 dropped by the kernel"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
	if eng.capture.closes != 1 {
		t.Errorf("capture closed %d times", eng.capture.closes)
	}
}

// Ctrl-C (the context) ends a blocked capture cleanly; the summary gives
// the drops the kernel counted during the capture.
func TestDumpInterruptedJSON(t *testing.T) {
	eng := newFakeEngine()
	eng.counters["capture_dropped"] = 5 // before the capture: not ours
	c := newFakeCapture(eng, captured()...)
	c.dropped = 7
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	r := runCtlContext(ctx, t, eng, defaultRecords(t), "dump", "-o", "json", "--addr", "10.0.0.3")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines: %s", len(lines), r.stdout)
	}
	var ev dumpEvent
	if err := json.Unmarshal([]byte(lines[1]), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Type != "message" || ev.From != inbound || ev.ToPod != "shop/pay" || ev.Len != 300 || string(ev.Data) != "\x00\x01binary" {
		t.Errorf("event %+v", ev)
	}
	var sum dumpSummary
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil {
		t.Fatal(err)
	}
	if sum != (dumpSummary{Type: "summary", Messages: 2, Bytes: 334, Dropped: 7}) {
		t.Errorf("summary %+v", sum)
	}
	if c.closes != 1 {
		t.Errorf("capture closed %d times", c.closes)
	}
}

func TestDumpDurationAndDrops(t *testing.T) {
	eng := newFakeEngine()
	newFakeCapture(eng, captured()[0]).dropped = 3
	start := time.Now()
	r := runCtl(t, eng, "", "dump", "--duration", "100ms")
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// At least the duration; the upper bound only tells it from a hang.
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Minute {
		t.Errorf("dump --duration 100ms took %v", d)
	}
	for _, want := range []string{"1 messages captured (34 B); 3 dropped by the kernel", "ring buffer overflowed"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, r.stderr)
		}
	}
}

func TestDumpPcap(t *testing.T) {
	eng := newFakeEngine()
	newFakeCapture(eng, captured()...)
	path := filepath.Join(t.TempDir(), "out.pcap")
	r := runCtl(t, eng, "", "dump", "-c", "2", "-w", path)
	if r.code != ExitOK || r.stdout != "" {
		t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("pcap file mode %v, want 0600", st.Mode().Perm())
	}
	out := pcaptest.Tcpdump(t, "-nn", "-r", path)
	if strings.Count(out, "Flags [P.]") != 2 {
		t.Errorf("tcpdump:\n%s", out)
	}
	// -w - streams the pcap on stdout.
	newFakeCapture(eng, captured()...)
	r = runCtl(t, eng, "", "dump", "-c", "2", "-w", "-", "-o", "json")
	rd, err := pcapgo.NewReader(strings.NewReader(r.stdout))
	if err != nil {
		t.Fatalf("stdout is not a pcap stream: %v", err)
	}
	n := 0
	for _, _, err := rd.ReadPacketData(); err == nil; _, _, err = rd.ReadPacketData() {
		n++
	}
	if n != 2 {
		t.Errorf("%d packets on stdout, want 2", n)
	}
}

// -w creates its file: it refuses an existing file or a symbolic link,
// leaves them as they were, and says what to do.
func TestDumpPcapRefusesExisting(t *testing.T) {
	dir := t.TempDir()
	existing := writeFileIn(t, dir, "old.pcap", "keep")
	target := writeFileIn(t, dir, "target", "keep")
	link := filepath.Join(dir, "link.pcap")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pcap")
	if err := os.Symlink(filepath.Join(dir, "nosuch"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{existing, link, dangling} {
		eng := newFakeEngine()
		newFakeCapture(eng, captured()...)
		r := runCtl(t, eng, "", "dump", "-c", "2", "-w", path)
		want := path + " already exists"
		if r.code != ExitError || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "remove it or name a new file") {
			t.Errorf("-w %s: exit %d, stderr %q; want exit %d and %q", path, r.code, r.stderr, ExitError, want)
		}
	}
	for _, path := range []string{existing, target} {
		if b, err := os.ReadFile(path); err != nil || string(b) != "keep" {
			t.Errorf("%s: %q, %v; want it untouched", path, b, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "nosuch")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
}

func TestDumpBusy(t *testing.T) {
	eng := &busyEngine{newFakeEngine()}
	r := runCtl(t, eng, "", "dump")
	if r.code != ExitError || !strings.Contains(r.stderr, "a capture is already running on this node: wait for the other dump") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
}

type busyEngine struct{ *fakeEngine }

func (busyEngine) StartCapture(bpf.CaptureFilter) (Capture, error) { return nil, bpf.ErrCaptureBusy }

// A failing output ends the capture with an error, and closes it.
func TestCaptureWriteError(t *testing.T) {
	eng := newFakeEngine()
	c := newFakeCapture(eng, captured()...)
	boom := errors.New("disk full")
	_, err := capture(context.Background(), c, dumpOptions{}, func(bpf.CaptureEvent) error { return boom })
	if !errors.Is(err, boom) || c.closes != 1 {
		t.Errorf("err %v, closes %d", err, c.closes)
	}
}

func TestHexDump(t *testing.T) {
	var b bytes.Buffer
	hexDump(&b, []byte("0123456789abcdef\x7fZ"))
	want := "  0000  30 31 32 33 34 35 36 37  38 39 61 62 63 64 65 66  |0123456789abcdef|\n" +
		"  0010  7f 5a                                             |.Z|\n"
	if b.String() != want {
		t.Errorf("hexDump:\n%q\nwant\n%q", b.String(), want)
	}
}
