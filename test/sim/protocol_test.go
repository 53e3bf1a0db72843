package sim

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestStreamChunkingInvariant(t *testing.T) {
	whole := make([]byte, 100_003)
	NewStream(7).Read(whole)
	var got []byte
	st, r := NewStream(7), rand.New(rand.NewPCG(1, 2))
	for len(got) < len(whole) {
		chunk := make([]byte, min(r.IntN(20), len(whole)-len(got)))
		st.Read(chunk)
		got = append(got, chunk...)
	}
	if !bytes.Equal(got, whole) {
		t.Fatal("the stream depends on how it is read")
	}
	other := make([]byte, 64)
	NewStream(8).Read(other)
	if bytes.Equal(other, whole[:64]) {
		t.Fatal("seeds 7 and 8 give the same stream")
	}
}

func TestSizerRange(t *testing.T) {
	for _, c := range []struct{ lo, hi int }{{1, 1}, {1, 256 << 10}, {100, 100}, {3, 70000}, {0, 0}} {
		z := newSizer(1, c.lo, c.hi)
		sawLo, sawHi := false, false
		for range 20000 {
			v := z.next()
			if v < max(c.lo, 1) || v > max(c.hi, c.lo, 1) {
				t.Fatalf("[%d, %d]: size %d", c.lo, c.hi, v)
			}
			sawLo = sawLo || v < max(c.lo, 1)*2
			sawHi = sawHi || v > max(c.hi, 1)/2
		}
		if !sawLo || !sawHi {
			t.Errorf("[%d, %d]: small sizes seen %v, large sizes seen %v", c.lo, c.hi, sawLo, sawHi)
		}
	}
}

func TestHistogram(t *testing.T) {
	for v := uint64(0); v < 1<<40; v = v*17/16 + 1 {
		i := bucketOf(v)
		if lowerBound(i) > v || lowerBound(i+1) <= v {
			t.Fatalf("value %d in bucket %d [%d, %d)", v, i, lowerBound(i), lowerBound(i+1))
		}
	}
	var h histogram
	for us := 1; us <= 10000; us++ {
		h.record(time.Duration(us) * time.Microsecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 5000}, {0.99, 9900}} {
		if got := h.quantile(c.q); got < c.want*0.99 || got > c.want*1.01 {
			t.Errorf("quantile(%v) = %.1f us, want %.0f", c.q, got, c.want)
		}
	}
}

func TestIstioRules(t *testing.T) {
	v4, v6 := istioRules(false), istioRules(true)
	for _, want := range []string{
		"-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN",
		"-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN",
		"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
		"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006",
		"-A ISTIO_INBOUND -p tcp -m tcp --dport 15090 -j RETURN",
	} {
		if !strings.Contains(v4, want+"\n") {
			t.Errorf("IPv4 rules lack %q", want)
		}
	}
	for _, want := range []string{"-A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN", "-A ISTIO_OUTPUT -d ::1/128 -j RETURN"} {
		if !strings.Contains(v6, want+"\n") {
			t.Errorf("IPv6 rules lack %q", want)
		}
	}
	dump := "[3:180] -A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n" +
		"[1:80] -A ISTIO_OUTPUT -s ::6/128 -o lo -j RETURN\n[7:420] -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
	if out, in := countRedirects(dump); out != 7 || in != 3 {
		t.Errorf("countRedirects = %d, %d; want 7, 3", out, in)
	}
}

func TestManifestCheck(t *testing.T) {
	good := manifest{Name: "ma123456", Bridge: "ma123456", CgroupDir: "/sys/fs/cgroup/mesh-accel-sim-ma123456",
		TempDir: "/tmp/mesh-accel-sim-ma123456", Netns: []string{"/run/netns/ma123456-a"}, Veths: []string{"ma123456v2"}}
	if err := good.check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []func(m *manifest){
		func(m *manifest) { m.Bridge = "eth0" },
		func(m *manifest) { m.CgroupDir = "/sys/fs/cgroup" },
		func(m *manifest) { m.TempDir = "/" },
		func(m *manifest) { m.Netns = []string{"/run/netns/cni-1"} },
		func(m *manifest) { m.Veths = []string{"eth0"} },
	} {
		m := good
		bad(&m)
		if m.check() == nil {
			t.Errorf("accepted %+v", m)
		}
	}
}

// TestProtocolInProcess runs the app server's handlers and the client modes
// over loopback inside the test process (no root, no pods).
func TestProtocolInProcess(t *testing.T) {
	ln, err := listenDual(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sink, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	s := &app{args: appArgs{Pod: "here"}, sinkAddr: sink.Addr().String()}
	go s.serveInternalSink(sink)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c.(*net.TCPConn))
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, target := range []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), net.JoinHostPort("::1", strconv.Itoa(port))} {
		for _, spec := range []ClientSpec{
			{Mode: ModeBulk, Op: OpSink, Streams: 2, Bytes: 1 << 20},
			{Mode: ModeBulk, Op: OpSinkFile, Bytes: 1 << 20},
			{Mode: ModeBulk, Op: OpSinkSplice, Bytes: 1 << 20},
			{Mode: ModeGenerate, Streams: 2, Bytes: 1 << 20},
			{Mode: ModeEcho, Bytes: 1 << 20},
			{Mode: ModeChurn, Count: 50},
			{Mode: ModeRR, Duration: 50 * time.Millisecond},
			{Mode: ModeConnRate, Duration: 50 * time.Millisecond},
			{Mode: ModeReset, Bytes: 100000},
			{Mode: ModePeer},
		} {
			spec.Target = target
			var out bytes.Buffer
			if err := runClient(spec, &out); err != nil {
				t.Fatal(err)
			}
			var r ClientResult
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if !r.OK || (spec.Mode == ModeReset && (!r.ResetSeen || !r.PrefixOK)) ||
				(spec.Mode == ModePeer && r.Peer.Pod != "here") {
				t.Errorf("%s %s: %+v", target, spec.Mode, r)
			}
		}
	}
	if err := runClient(ClientSpec{Mode: "nope"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown mode accepted")
	}
}
