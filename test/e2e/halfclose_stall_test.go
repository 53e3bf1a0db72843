package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// envoyLostCloseNotify is what Envoy logs (at debug level) when writing a
// TLS stream's close_notify failed: SslSocket::shutdownSsl marks the
// shutdown sent whatever SSL_shutdown returned, and nothing sends the
// alert again, so the peer never sees the end of the stream.
const envoyLostCloseNotify = "SSL shutdown: rc=-1"

// TestTLSHalfCloseStallsAreEnvoys separates the half-close stalls of the
// e2e tests (a client that half-closed waits for good for its reply) from
// our data path. Envoy ends a stream's write side over mutual TLS with a
// close_notify alert, not a FIN, and loses it when its socket's send
// buffer is full at that moment. The client pod's send buffers are capped
// at 64 KiB (tcp_wmem), so that a stream to a slow reader ends with a
// full one now and then: unaccelerated streams stall too. Every stream
// that stalls, with acceleration or without, must be one of the streams
// whose sidecar logged the failed close_notify, and nothing else may go
// wrong. The counts are logged.
func TestTLSHalfCloseStallsAreEnvoys(t *testing.T) {
	if testing.Short() {
		t.Skip("stalled streams wait for their 20 s deadline")
	}
	t.Setenv(sim.EnvEnvoyLogLevel, "debug")
	e := newEnv(t, optsDefault)
	for _, p := range e.sidecarPairs() {
		out, err := exec.Command("nsenter", "--net="+p.client.Netns, "sysctl", "-w", "net.ipv4.tcp_wmem=4096 16384 65536").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: cap the client pod's send buffers: %v: %s", p.name, err, out)
		}
		var streams, stalled, lost int
		for round := 0; round < 4; round++ {
			before := lostCloseNotifies(p.client, p.server)
			res := e.runWatchedAfter(p.client, sim.ClientSpec{Mode: sim.ModeBulk, Op: sim.OpSinkSlow, Target: p.server.AppTarget(false),
				Streams: 8, Bytes: 4 << 20, MinWrite: 1, MaxWrite: 128 << 10, Seed: int64(100 + 8*round),
				ReadSleep: 5 * time.Millisecond, PauseAfter: 3 << 20, Pause: 500 * time.Millisecond, Timeout: 20 * time.Second},
				time.Minute, p.client, p.server)
			n := lostCloseNotifies(p.client, p.server) - before
			var timeouts int
			for _, msg := range res.Errors {
				if strings.Contains(msg, "read sink reply") && strings.Contains(msg, "i/o timeout") {
					timeouts++
				} else {
					t.Errorf("%s round %d: %s", p.name, round, msg)
				}
			}
			if res.Mismatches != 0 || res.ErrorCount != len(res.Errors) {
				t.Errorf("%s round %d: %d errors (%d shown), %d mismatches: %v", p.name, round, res.ErrorCount, len(res.Errors), res.Mismatches, res.Errors)
			}
			if timeouts != n {
				t.Errorf("%s round %d: %d streams stalled, the sidecars lost %d close_notify alerts: a stall that is not Envoy's", p.name, round, timeouts, n)
			}
			streams += 8
			stalled += timeouts
			lost += n
			e.waitNoConns()
		}
		t.Logf("%s: %d of %d streams stalled; the sidecars logged %d lost close_notify alerts", p.name, stalled, streams, lost)
	}
}

// lostCloseNotifies counts the close_notify alerts the pods' sidecars
// failed to write so far.
func lostCloseNotifies(pods ...*sim.Pod) int {
	n := 0
	for _, p := range pods {
		n += strings.Count(p.Sidecar().Stderr(), envoyLostCloseNotify)
	}
	return n
}
