package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Client modes ([ClientSpec.Mode]).
const (
	ModeBulk     = "bulk"     // send seeded streams to a sink op, compare count and SHA-256
	ModeGenerate = "generate" // receive OpGenerate streams, verify byte for byte
	ModeEcho     = "echo"     // send a stream and verify its echo concurrently
	ModeChurn    = "churn"    // many short OpEcho connections, sent right after connect
	ModeRR       = "rr"       // OpRR ping-pong for a duration: rate and latency
	ModeConnRate = "connrate" // sequential connect, 1-byte echo, close
	ModeReset    = "reset"    // OpReset: expect a prefix of the stream, then a reset
	ModePeer     = "peer"     // OpPeer: who answered, and which peer address it saw
)

// ClientSpec configures one run of the client role ([Pod.RunClient]).
// Zero values take the defaults given per field.
type ClientSpec struct {
	Mode     string
	Target   string // host:port, "10.1.2.3:8080" or "[fd00::3]:8080"
	Op       byte   // bulk: OpSink (default), OpSinkFile, OpSinkSplice or OpSinkSlow
	Streams  int    // parallel connections of bulk, generate, echo and rr (1)
	Bytes    int64  // bytes per stream (1 MiB); reset: N
	MinWrite int    // write sizes of bulk and echo, log-uniform in [MinWrite, MaxWrite] (1)
	MaxWrite int    // (64 KiB)
	Seed     int64  // stream i uses seed Seed+i
	Count    int    // churn: connections (100)
	// Concurrency is the number of churn workers (4).
	Concurrency int
	Size        int           // rr: message size (64)
	Duration    time.Duration // rr and connrate (1 s)
	Source      string        // optional local address to bind, "ip" or "ip:port"
	// ReadSleep, PauseAfter and Pause configure OpSinkSlow: the reader
	// sleeps ReadSleep after each read, and stops for Pause once it has
	// read PauseAfter bytes (no pause when zero).
	ReadSleep  time.Duration
	PauseAfter int64
	Pause      time.Duration
	// Timeout bounds every connection (its I/O deadline, counted after
	// Duration for rr and connrate), so that a stall is reported as an error
	// rather than a hang (30 s).
	Timeout time.Duration
}

// ClientResult is what the client role prints as one JSON object.
type ClientResult struct {
	Mode       string
	OK         bool     // no error and no mismatch
	Errors     []string // the first error and mismatch messages
	ErrorCount int      // errors (mismatches not included)
	Mismatches int      // data that differed from what was sent or expected
	Bytes      int64    // payload bytes verified
	Conns      int      // connections that completed
	ElapsedSec float64
	// RatePerSec is bytes/s for bulk, generate and echo, round trips/s for
	// rr, connections/s for churn and connrate.
	RatePerSec float64
	// P50us and P99us are latency percentiles in microseconds: round trip
	// (rr), whole connection (churn, connrate).
	P50us, P99us float64
	// Reset mode: whether the connection ended with ECONNRESET (rather than
	// EOF), how many bytes arrived before, and whether they were a correct
	// prefix of the stream.
	ResetSeen           bool
	ReceivedBeforeReset int64
	PrefixOK            bool
	Peer                *PeerInfo // peer mode: the app's answer
	Local, Remote       string    // peer mode: the client's view of the connection
}

// maxMessages bounds ClientResult.Errors.
const maxMessages = 20

// collector gathers results of concurrent connections.
type collector struct {
	mu   sync.Mutex
	res  ClientResult
	hist histogram
}

func (c *collector) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.ErrorCount++
	c.note(fmt.Sprintf(format, args...))
}

func (c *collector) mismatch(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Mismatches++
	c.note("mismatch: " + fmt.Sprintf(format, args...))
}

func (c *collector) note(msg string) {
	if len(c.res.Errors) < maxMessages {
		c.res.Errors = append(c.res.Errors, msg)
	}
}

func (c *collector) done(bytes int64, h *histogram) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Bytes += bytes
	c.res.Conns++
	if h != nil {
		c.hist.merge(h)
	}
}

// withDefaults fills the zero fields of s.
func (s ClientSpec) withDefaults() ClientSpec {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&s.Streams, 1)
	def(&s.MinWrite, 1)
	def(&s.MaxWrite, 64<<10)
	def(&s.Count, 100)
	def(&s.Concurrency, 4)
	def(&s.Size, 64)
	s.MaxWrite = max(s.MaxWrite, s.MinWrite)
	if s.Bytes <= 0 {
		s.Bytes = 1 << 20
	}
	if s.Op == 0 {
		s.Op = OpSink
	}
	if s.Duration <= 0 {
		s.Duration = time.Second
	}
	if s.Timeout <= 0 {
		s.Timeout = 30 * time.Second
	}
	return s
}

// runClient runs one client spec and prints its result as JSON on w.
func runClient(spec ClientSpec, w io.Writer) error {
	spec = spec.withDefaults()
	modes := map[string]func(ClientSpec, *collector){
		ModeBulk: runBulk, ModeGenerate: runGenerate, ModeEcho: runEcho, ModeChurn: runChurn,
		ModeRR: runRR, ModeConnRate: runConnRate, ModeReset: runReset, ModePeer: runPeer,
	}
	run, ok := modes[spec.Mode]
	if !ok {
		return fmt.Errorf("unknown client mode %q", spec.Mode)
	}
	if spec.Mode == ModeBulk && spec.Op != OpSink && spec.Op != OpSinkFile && spec.Op != OpSinkSplice && spec.Op != OpSinkSlow {
		return fmt.Errorf("bulk needs a sink op, not %q", spec.Op)
	}
	col := &collector{res: ClientResult{Mode: spec.Mode}}
	start := time.Now()
	run(spec, col)
	r := col.res
	r.ElapsedSec = time.Since(start).Seconds()
	r.P50us, r.P99us = col.hist.quantile(0.50), col.hist.quantile(0.99)
	if r.RatePerSec == 0 && r.ElapsedSec > 0 {
		r.RatePerSec = float64(r.Bytes) / r.ElapsedSec
	}
	r.OK = r.ErrorCount == 0 && r.Mismatches == 0
	return json.NewEncoder(w).Encode(r)
}

// dial connects to the target, from the spec's source if any, and sets the
// connection's deadline to now+extra+Timeout.
func dial(spec ClientSpec, extra time.Duration) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: spec.Timeout}
	if spec.Source != "" {
		src, err := parseSource(spec.Source)
		if err != nil {
			return nil, err
		}
		d.LocalAddr = src
	}
	c, err := d.Dial("tcp", spec.Target)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	if err := tc.SetDeadline(time.Now().Add(extra + spec.Timeout)); err != nil {
		tc.Close()
		return nil, err
	}
	return tc, nil
}

func parseSource(s string) (*net.TCPAddr, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return nil, fmt.Errorf("bad source address %q: %w", s, err)
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)), nil
}

// parallel runs f(0..n-1) concurrently and waits.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// verifier compares received bytes with the expected stream and remembers
// where they first differed.
type verifier struct {
	st    *Stream
	want  []byte
	off   int64 // bytes checked
	first int64 // offset of the first difference, -1 if none
}

func newVerifier(seed int64) *verifier {
	return &verifier{st: NewStream(seed), first: -1}
}

func (v *verifier) check(p []byte) {
	if cap(v.want) < len(p) {
		v.want = make([]byte, len(p))
	}
	want := v.want[:len(p)]
	v.st.Read(want)
	if v.first < 0 {
		for i := range p {
			if p[i] != want[i] {
				v.first = v.off + int64(i)
				break
			}
		}
	}
	v.off += int64(len(p))
}

// describe returns "" when ok, else what went wrong.
func (v *verifier) describe(wantLen int64) string {
	switch {
	case v.first >= 0:
		return "stream differs from offset " + strconv.FormatInt(v.first, 10)
	case wantLen >= 0 && v.off != wantLen:
		return fmt.Sprintf("received %d bytes, want %d", v.off, wantLen)
	}
	return ""
}

func (c *collector) merge(h *histogram) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hist.merge(h)
}

// rate sets RatePerSec to completed connections per second since start.
func (c *collector) rate(start time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.RatePerSec = float64(c.res.Conns) / time.Since(start).Seconds()
}
