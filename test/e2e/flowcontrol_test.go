package e2e

import (
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/rules"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// slowMiB is the volume of one slow-reader stream: several times the
// backlog limit, about 1.5 s at the slow sink's pace.
const slowMiB = 96

// fcCase is one configuration of the flow-control tests: the server pod's
// and the client pod's acceleration (nil: not attached).
type fcCase struct {
	name           string
	client, server *bpf.PodConfig
}

var (
	trustedDefault = bpf.PodConfig{Rules: rules.Default(), TrustApp: true}
	fcCases        = []fcCase{
		{"annotation only", &oneWayCfg, &oneWayCfg},
		{"app trusted default rules", &trustedDefault, &trustedDefault},
		{"no rules app trusted", &trustedAll, &trustedAll},
		// Only the client pod is attached: its app -> sidecar hop is the
		// one redirected, and the sidecar stops reading when the slow
		// reader behind the other pod pushes back (Envoy's flow control).
		{"app to sidecar only", &oneWayCfg, nil},
	}
)

// slowStream runs streams of 128 KiB writes from a to b's slow sink through
// both sidecars and returns the memory peaks and the counters' change.
// The reader sleeps 1 ms after each 64 KiB read (about 60 MB/s) unless
// fast, and stops for pause after pauseAfter bytes.
func (e *env) slowStream(a, b *sim.Pod, streams int, mib int64, fast bool, pauseAfter int64, pause time.Duration) (memPeak, bpf.Counters) {
	e.t.Helper()
	readSleep := time.Millisecond
	if fast {
		readSleep = 0
	}
	stop := sampleMemory(e.t, a, b)
	before := e.counters()
	res := e.runWatchedAfter(a, sim.ClientSpec{Mode: sim.ModeBulk, Op: sim.OpSinkSlow, Target: b.AppTarget(false),
		Streams: streams, Bytes: mib << 20, MinWrite: 128 << 10, MaxWrite: 128 << 10, Seed: 11,
		ReadSleep: readSleep, PauseAfter: pauseAfter, Pause: pause, Timeout: pause + 60*time.Second}, pause+20*time.Second, a, b)
	if !res.OK {
		e.t.Fatalf("slow stream: %d errors, %d mismatches: %v", res.ErrorCount, res.Mismatches, res.Errors)
	}
	peak := stop()
	if res.Bytes != int64(streams)*mib<<20 || res.Conns != streams {
		e.t.Fatalf("verified %d bytes over %d streams, want %d MiB over %d", res.Bytes, res.Conns, int64(streams)*mib, streams)
	}
	e.waitNoConns()
	return peak, e.counters().Sub(before)
}

// checkBounded checks that no socket held more unread redirected bytes
// than the backlog limit, and that the limit was reached (the test
// exercised flow control).
func checkBounded(t *testing.T, name string, peak memPeak, c bpf.Counters) {
	t.Helper()
	const limit = int64(bpf.DefaultBacklogLimit)
	if peak.Samples == 0 {
		t.Errorf("%s: no socket sample with an empty stack queue", name)
	}
	if peak.Backlog > limit {
		t.Errorf("%s: a socket held %d unread redirected bytes, limit %d", name, peak.Backlog, limit)
	}
	// Stack bytes are charged with their truesize, a little more than
	// their payload: allow a quarter on the upper estimate.
	if peak.Upper > limit+limit/4 {
		t.Errorf("%s: a socket's receive memory less its stack bytes reached %d, limit %d", name, peak.Upper, limit)
	}
	wantPositive(t, c, "flow_control_held", "bytes_redirected")
	want(t, c, map[string]uint64{"fallback_map_full": 0})
}

// A writer sending 128 KiB blocks as fast as the kernel takes them to an
// app reading 64 KiB per millisecond, through both sidecars with Istio's
// rules: the writer never sees an error, every byte arrives in order, no
// socket holds more than the backlog limit of unread redirected bytes, and
// the node's TCP memory stays within 4x of the same stream without
// acceleration, plus 16 MiB (both as rises above the node's level when
// the stream began).
func TestSlowReader(t *testing.T) {
	e := newEnv(t, optsDefault)
	base, _ := e.slowStream(e.pod("pa", true, nil), e.pod("pb", true, nil), 1, slowMiB, false, 0, 0)
	t.Logf("without acceleration: TCP memory peak %d pages", base.TCPPages)
	for i, tc := range fcCases {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			a := e.pod("a"+string(rune('0'+i)), true, tc.client)
			b := e.pod("b"+string(rune('0'+i)), true, tc.server)
			peak, c := e.slowStream(a, b, 1, slowMiB, false, 0, 0)
			t.Logf("TCP memory peak %d pages (unaccelerated %d), largest backlog %d (%d samples), upper %d; "+
				"redirected %d MiB, held %d times, resumed %d times",
				peak.TCPPages, base.TCPPages, peak.Backlog, peak.Samples, peak.Upper,
				c["bytes_redirected"]>>20, c["flow_control_held"], c["flow_control_resumed"])
			checkBounded(t, tc.name, peak, c)
			// Growth above the level the run began at: the node's TCP
			// memory also holds earlier tests' sockets, still closing.
			if limit := 4*base.Growth() + 16<<20/pageSize; peak.Growth() > limit {
				t.Errorf("TCP memory rose %d pages (peak %d), want <= %d (4x the unaccelerated rise %d + 16 MiB)",
					peak.Growth(), peak.TCPPages, limit, base.Growth())
			}
		})
	}
}

// 32 slow-reader streams at once: the node's TCP memory stays below
// tcp_mem's pressure threshold and within 4x of the unaccelerated figure.
func TestSlowReadersMany(t *testing.T) {
	const streams = 32
	e := newEnv(t, optsDefault)
	base, _ := e.slowStream(e.pod("pa", true, nil), e.pod("pb", true, nil), streams, 8, false, 0, 0)
	peak, c := e.slowStream(e.pod("a", true, &trustedAll), e.pod("b", true, &trustedAll), streams, 8, false, 0, 0)
	pressure := tcpMemPressure(t)
	t.Logf("TCP memory peak %d pages (unaccelerated %d, tcp_mem pressure %d); largest backlog %d; held %d, resumed %d",
		peak.TCPPages, base.TCPPages, pressure, peak.Backlog, c["flow_control_held"], c["flow_control_resumed"])
	checkBounded(t, "32 streams", peak, c)
	if peak.TCPPages >= pressure || peak.TCPPages > 4*base.TCPPages {
		t.Errorf("TCP memory peak %d pages, want < %d (tcp_mem pressure) and <= 4x unaccelerated %d",
			peak.TCPPages, pressure, base.TCPPages)
	}
}

// A fast reader that stops for 30 s and then resumes: no error, no loss,
// the backlog bounded meanwhile, and the direction redirected again once
// the reader has caught up.
func TestStoppedReader(t *testing.T) {
	pause := 30 * time.Second
	if testing.Short() {
		pause = 3 * time.Second
	}
	e := newEnv(t, optsDefault)
	a := e.pod("a", true, &trustedAll)
	b := e.pod("b", true, &trustedAll)
	peak, c := e.slowStream(a, b, 1, 64, true, 8<<20, pause)
	t.Logf("TCP memory peak %d pages; largest backlog %d; held %d, resumed %d, redirected %d MiB",
		peak.TCPPages, peak.Backlog, c["flow_control_held"], c["flow_control_resumed"], c["bytes_redirected"]>>20)
	checkBounded(t, "stopped reader", peak, c)
	wantPositive(t, c, "flow_control_resumed")
}
