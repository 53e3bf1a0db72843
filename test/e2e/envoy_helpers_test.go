package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// Roles and helpers of the Envoy tests (envoy_test.go).

// Roles of the test binary used here (see roles in helpers_test.go).
const (
	// envEnvoyProbe makes the test binary a client ([probeSpec] as JSON).
	envEnvoyProbe = "MESH_ACCEL_TEST_ENVOY_PROBE"
	// envHTTPServer makes the test binary an HTTP/1.1 server
	// ([httpServerSpec] as JSON).
	envHTTPServer = "MESH_ACCEL_TEST_HTTP_SERVER"
)

func init() {
	roles[envEnvoyProbe] = probeRole
	roles[envHTTPServer] = httpServerRole
}

// probeSpec configures the probe role.
type probeSpec struct {
	// Mode: "wakeup" (messages with idle gaps over OpEcho), "earlyclose"
	// (write Payload, half-close at once, see what comes back), "streams"
	// (long or short uploads to OpSink/OpSinkSlow and downloads from
	// OpGenerate), "http" (sequential HTTP requests).
	Mode   string
	Target string
	Seed   int64
	// Timeout is every connection's I/O deadline (wakeup: per message).
	Timeout time.Duration

	// wakeup
	Streams  int // parallel connections (also streams: per direction)
	Messages int // per connection
	MaxSize  int // message sizes 1..MaxSize
	MaxGapMs int // idle gap before each message 0..MaxGapMs; messages are also split in two writes with such a gap

	// earlyclose
	Tries   int
	Payload []byte
	// HalfCloseAfterReply delays the half-close until the first bytes of
	// the reply have arrived.
	HalfCloseAfterReply bool

	// streams
	Bytes      int64 // per stream
	ReadSleep  time.Duration
	ReadyAfter int64 // say "ready" once every stream moved this many bytes

	// http
	Requests   int
	ReqBytes   int
	RespBytes  int
	KeepAlives bool
}

// probeResult is what the probe saw.
type probeResult struct {
	Messages int // wakeup: messages answered
	// Outcomes counts how connections ended: "complete", "answered",
	// "eof" (an early end of stream), "reset" (ECONNRESET or EPIPE),
	// "timeout" and "other".
	Outcomes map[string]int
	// Corrupt counts connections that received bytes differing from the
	// expected ones (a truncated stream is not corrupt).
	Corrupt  int
	Notes    []string // the first errors
	Bytes    int64    // verified payload bytes
	NewConns int      // http: connections the client opened
	roleError
}

func probeRole(js string) {
	roleMain(js, func(s probeSpec, r *probeResult) error {
		r.Outcomes = map[string]int{}
		if s.Timeout <= 0 {
			s.Timeout = 30 * time.Second
		}
		p := &prober{spec: s, res: r}
		switch s.Mode {
		case "wakeup":
			return p.wakeup()
		case "earlyclose":
			return p.earlyClose()
		case "streams":
			return p.streams()
		case "http":
			return p.http()
		}
		return fmt.Errorf("unknown mode %q", s.Mode)
	})
}

type prober struct {
	spec probeSpec
	mu   sync.Mutex
	res  *probeResult
}

func (p *prober) outcome(kind string, note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Outcomes[kind]++
	if note != "" && len(p.res.Notes) < 20 {
		p.res.Notes = append(p.res.Notes, note)
	}
}

func (p *prober) corrupt(note string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.Corrupt++
	if len(p.res.Notes) < 20 {
		p.res.Notes = append(p.res.Notes, "corrupt: "+note)
	}
}

func (p *prober) addBytes(n int64) {
	p.mu.Lock()
	p.res.Bytes += n
	p.mu.Unlock()
}

// errKind classifies how a connection ended.
func errKind(err error) string {
	switch {
	case err == nil:
		return "complete"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other"
}

// dialPlain connects with plain TCP (no MPTCP, whose sockets are never
// accelerated) and sets the deadline.
func dialPlain(target string, timeout time.Duration) (*net.TCPConn, error) {
	var d net.Dialer
	d.Timeout = timeout
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp", target)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	return tc, tc.SetDeadline(time.Now().Add(timeout))
}

// wakeup sends Messages echo messages per connection, each after an idle
// gap and split in two writes with a gap between them, and reads each
// echo before the next message: a message whose arrival does not wake a
// reader stays unanswered until the per-message deadline.
func (p *prober) wakeup() error {
	s := p.spec
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range s.Streams {
		wg.Go(func() {
			seed := s.Seed + int64(i)
			n, err := p.wakeupOne(seed)
			answered.Add(int64(n))
			if err != nil {
				p.outcome(errKind(err), fmt.Sprintf("stream %d: message %d: %v", i, n, err))
				return
			}
			p.outcome("complete", "")
		})
	}
	wg.Wait()
	p.res.Messages = int(answered.Load())
	return nil
}

func (p *prober) wakeupOne(seed int64) (int, error) {
	s := p.spec
	c, err := dialPlain(s.Target, s.Timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if _, err := c.Write([]byte{sim.OpEcho}); err != nil {
		return 0, err
	}
	rnd := sim.NewStream(seed ^ 0x5a5a)
	gap := func() time.Duration {
		var b [8]byte
		rnd.Read(b[:])
		return time.Duration(binary.LittleEndian.Uint64(b[:])%uint64(s.MaxGapMs+1)) * time.Millisecond
	}
	st := sim.NewStream(seed)
	msg, got := make([]byte, s.MaxSize), make([]byte, s.MaxSize)
	for i := range s.Messages {
		var b [8]byte
		rnd.Read(b[:])
		size := 1 + int(binary.LittleEndian.Uint64(b[:])%uint64(s.MaxSize))
		m := msg[:size]
		st.Read(m)
		time.Sleep(gap())
		_ = c.SetDeadline(time.Now().Add(s.Timeout))
		split := size / 2
		if split > 0 {
			if _, err := c.Write(m[:split]); err != nil {
				return i, err
			}
			time.Sleep(gap())
		}
		if _, err := c.Write(m[split:]); err != nil {
			return i, err
		}
		if _, err := io.ReadFull(c, got[:size]); err != nil {
			return i, err
		}
		if !bytes.Equal(got[:size], m) {
			p.corrupt(fmt.Sprintf("seed %d message %d", seed, i))
			return i, errors.New("echo differs")
		}
		p.addBytes(int64(size))
	}
	if err := c.CloseWrite(); err != nil {
		return s.Messages, err
	}
	var one [1]byte
	if n, err := c.Read(one[:]); n != 0 || !errors.Is(err, io.EOF) {
		return s.Messages, fmt.Errorf("after the last echo: %d bytes, %v (want EOF)", n, err)
	}
	return s.Messages, nil
}

// earlyClose connects Tries times, writes Payload, half-closes (at once,
// or after the reply's first bytes) and reads until the end: "answered" (some reply, then EOF), "eof" (no reply),
// "reset" and so on.
func (p *prober) earlyClose() error {
	for i := range p.spec.Tries {
		c, err := dialPlain(p.spec.Target, p.spec.Timeout)
		if err != nil {
			return fmt.Errorf("try %d: %w", i, err)
		}
		_, err = c.Write(p.spec.Payload)
		var got []byte
		if err == nil && p.spec.HalfCloseAfterReply {
			buf := make([]byte, 4096)
			var n int
			n, err = c.Read(buf)
			got = buf[:n]
		}
		if err == nil {
			err = c.CloseWrite()
		}
		if err == nil {
			var rest []byte
			rest, err = io.ReadAll(c)
			got = append(got, rest...)
		}
		c.Close()
		switch {
		case err != nil:
			p.outcome(errKind(err), fmt.Sprintf("try %d: %d bytes, %v", i, len(got), err))
		case len(got) > 0:
			p.outcome("answered", "")
		default:
			p.outcome("eof", "")
		}
	}
	return nil
}

// streams runs Streams uploads (to OpSinkSlow, read at the app at
// ReadSleep per 64 KiB, or to OpSink when ReadSleep is 0) and Streams
// downloads (from OpGenerate, read here at ReadSleep per 64 KiB), all
// checksummed; with ReadyAfter it says "ready" once every stream has
// moved that many bytes.
func (p *prober) streams() error {
	s := p.spec
	var wg sync.WaitGroup
	var moved sync.WaitGroup
	moved.Add(2 * s.Streams)
	for i := range 2 * s.Streams {
		var once sync.Once
		progress := func(n int64) {
			if n >= s.ReadyAfter {
				once.Do(moved.Done)
			}
		}
		wg.Go(func() {
			defer once.Do(moved.Done)
			seed := s.Seed + int64(i)
			var err error
			if i%2 == 0 {
				err = p.upload(seed, progress)
			} else {
				err = p.download(seed, progress)
			}
			p.outcome(errKind(err), errNote(i, err))
		})
	}
	if s.ReadyAfter > 0 {
		moved.Wait()
		fmt.Println("ready")
	}
	wg.Wait()
	return nil
}

func errNote(i int, err error) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("stream %d: %v", i, err)
}

func (p *prober) upload(seed int64, progress func(int64)) error {
	s := p.spec
	c, err := dialPlain(s.Target, s.Timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	hdr := []byte{sim.OpSink}
	if s.ReadSleep > 0 {
		hdr = []byte{sim.OpSinkSlow}
		hdr = binary.BigEndian.AppendUint64(hdr, 0)
		hdr = binary.BigEndian.AppendUint64(hdr, 0)
		hdr = binary.BigEndian.AppendUint64(hdr, uint64(s.ReadSleep.Microseconds()))
	}
	if _, err := c.Write(hdr); err != nil {
		return err
	}
	st, h := sim.NewStream(seed), sha256.New()
	buf := make([]byte, 64<<10)
	for sent := int64(0); sent < s.Bytes; {
		k := min(int64(len(buf)), s.Bytes-sent)
		st.Read(buf[:k])
		h.Write(buf[:k])
		if _, err := c.Write(buf[:k]); err != nil {
			return fmt.Errorf("write after %d bytes: %w", sent, err)
		}
		sent += k
		progress(sent)
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	var reply [sim.SinkReplyLen]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	n := int64(binary.BigEndian.Uint64(reply[:8]))
	if n != s.Bytes || !bytes.Equal(reply[8:], h.Sum(nil)) {
		// A reply arrived: the server read other bytes than were sent.
		p.corrupt(fmt.Sprintf("upload seed %d: server read %d bytes sha %x, sent %d", seed, n, reply[8:16], s.Bytes))
		return nil
	}
	p.addBytes(n)
	return nil
}

func (p *prober) download(seed int64, progress func(int64)) error {
	s := p.spec
	c, err := dialPlain(s.Target, s.Timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	req := binary.BigEndian.AppendUint64([]byte{sim.OpGenerate}, uint64(s.Bytes))
	req = binary.BigEndian.AppendUint64(req, uint64(seed))
	if _, err := c.Write(req); err != nil {
		return err
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	st := sim.NewStream(seed)
	buf, want := make([]byte, 64<<10), make([]byte, 64<<10)
	var got int64
	for {
		n, err := c.Read(buf)
		st.Read(want[:n])
		if !bytes.Equal(buf[:n], want[:n]) {
			p.corrupt(fmt.Sprintf("download seed %d: bytes differ within [%d, %d)", seed, got, got+int64(n)))
			return errors.New("corrupt")
		}
		got += int64(n)
		if got > s.Bytes {
			p.corrupt(fmt.Sprintf("download seed %d: %d bytes, more than %d", seed, got, s.Bytes))
			return errors.New("corrupt")
		}
		progress(got)
		if errors.Is(err, io.EOF) {
			if got < s.Bytes {
				return fmt.Errorf("after %d of %d bytes: %w", got, s.Bytes, io.ErrUnexpectedEOF)
			}
			p.addBytes(got)
			return nil
		}
		if err != nil {
			return fmt.Errorf("after %d of %d bytes: %w", got, s.Bytes, err)
		}
		if s.ReadSleep > 0 {
			time.Sleep(s.ReadSleep)
		}
	}
}

// http sends Requests sequential POSTs: the body is ReqBytes of the
// request's stream; the server answers with the body's SHA-256 in a header
// and RespBytes of the response's stream, both checked.
func (p *prober) http() error {
	s := p.spec
	var newConns atomic.Int64
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			d.SetMultipathTCP(false)
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives:   !s.KeepAlives,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: s.Timeout}
	body, want := make([]byte, s.ReqBytes), make([]byte, s.RespBytes)
	for i := range s.Requests {
		seed := s.Seed + int64(i)
		sim.NewStream(seed).Read(body)
		sum := sha256.Sum256(body)
		url := fmt.Sprintf("http://%s/sum?n=%d&seed=%d", s.Target, s.RespBytes, seed+1<<32)
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(ci httptrace.GotConnInfo) {
				if !ci.Reused {
					newConns.Add(1)
				}
			},
		}))
		resp, err := cl.Do(req)
		if err != nil {
			p.outcome(errKind(err), fmt.Sprintf("request %d: %v", i, err))
			continue
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			p.outcome(errKind(err), fmt.Sprintf("request %d: body: %v", i, err))
			continue
		case resp.StatusCode != http.StatusOK:
			p.outcome("other", fmt.Sprintf("request %d: %s: %.200s", i, resp.Status, got))
			continue
		}
		sim.NewStream(seed + 1<<32).Read(want)
		if resp.Header.Get("X-Body-Sha256") != hex.EncodeToString(sum[:]) || !bytes.Equal(got, want) {
			p.corrupt(fmt.Sprintf("request %d: body sha %q (want %x), %d response bytes", i,
				resp.Header.Get("X-Body-Sha256"), sum[:], len(got)))
			continue
		}
		p.addBytes(int64(len(body) + len(got)))
		p.outcome("complete", "")
	}
	p.res.NewConns = int(newConns.Load())
	return nil
}

// httpServerSpec configures the HTTP server role.
type httpServerSpec struct {
	Addr string // listen address, "[::]:PORT"
	// IdleTimeout closes idle keep-alive connections (so that the inbound
	// sidecar's pooled connections to the app end after a test).
	IdleTimeout time.Duration
}

// httpServerRole serves POST /sum?n=N&seed=S: the request body's SHA-256
// in X-Body-Sha256 and N bytes of the stream of seed S.
func httpServerRole(js string) {
	roleMain(js, func(s httpServerSpec, _ *roleError) error {
		ln, err := listenTCP("tcp", s.Addr, 0)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(serveSum), IdleTimeout: s.IdleTimeout, ReadHeaderTimeout: 30 * time.Second}
		fmt.Println("ready")
		return srv.Serve(ln)
	})
}

func serveSum(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	if _, err := io.Copy(h, r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n, err1 := strconv.Atoi(r.URL.Query().Get("n"))
	seed, err2 := strconv.ParseInt(r.URL.Query().Get("seed"), 10, 64)
	if err := errors.Join(err1, err2); err != nil || n < 0 {
		http.Error(w, fmt.Sprint("bad query: ", err), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Body-Sha256", hex.EncodeToString(h.Sum(nil)))
	w.Header().Set("Content-Length", strconv.Itoa(n))
	_, _ = io.CopyN(w, sim.NewStream(seed), int64(n))
}

// runProbe runs the probe role in pod p to its end and returns its result.
func runProbe(t *testing.T, p *sim.Pod, spec probeSpec) probeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res := waitRole[probeResult](t, startRole(t, ctx, p, envEnvoyProbe, spec, false))
	if res.Error != "" {
		t.Fatalf("probe %s in %s: %s", spec.Mode, p.Name, res.Error)
	}
	return res
}

// startHTTPServer starts the HTTP server role in p on port.
func startHTTPServer(t *testing.T, p *sim.Pod, port int) *sim.Proc {
	t.Helper()
	return startRole(t, roleCtx(t), p, envHTTPServer,
		httpServerSpec{Addr: "[::]:" + strconv.Itoa(port), IdleTimeout: time.Second}, true)
}

// envoyStat reads one of the pod's Envoy stats or fails the test.
func envoyStat(t *testing.T, p *sim.Pod, name string) uint64 {
	t.Helper()
	v, err := p.EnvoyStat(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// envoyStats returns the pod's Envoy stats whose names match the regular
// expression, as "name: value" lines (for logs).
func envoyStats(t *testing.T, p *sim.Pod, re string) string {
	t.Helper()
	out, err := p.EnvoyAdmin(http.MethodGet, "/stats?filter="+re)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasSuffix(l, ": 0") && l != "" {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "; ")
}

// pair is a client pod and a server pod.
type pair struct {
	name           string
	client, server *sim.Pod
}

// sidecarPairs returns a plain pair (no acceleration) and an accelerated
// one (every hop, apps trusted), both with Envoy sidecars.
func (e *env) sidecarPairs() []pair {
	e.t.Helper()
	return []pair{
		{"plain", e.pod("pa", true, nil), e.pod("pb", true, nil)},
		{"accelerated", e.pod("a", true, &trustedAll), e.pod("b", true, &trustedAll)},
	}
}

// undeclaredPort returns a port the registry does not declare (the HTTP
// inspector runs on connections to it).
func (e *env) undeclaredPort() int {
	declared := map[uint16]bool{}
	for _, s := range e.sim.Services() {
		declared[s.Port] = true
	}
	for port := uint16(9191); ; port++ {
		if !declared[port] {
			return int(port)
		}
	}
}

// runWatched runs a client and fails the test unless every check passed,
// as env.run, but if the client is still running after 15 s (a stream
// that normally takes about 2 s, stalled), it logs the state of the
// pods' sockets, our maps and the sidecars first, to tell where the
// bytes stopped. The client's own I/O deadline ends the run.
func (e *env) runWatched(p *sim.Pod, spec sim.ClientSpec, pods ...*sim.Pod) *sim.ClientResult {
	e.t.Helper()
	res := e.runWatchedAfter(p, spec, 15*time.Second, pods...)
	if !res.OK {
		e.t.Fatalf("client %s in %s: %d errors, %d mismatches: %v", spec.Mode, p.Name, res.ErrorCount, res.Mismatches, res.Errors)
	}
	return res
}

// runWatchedAfter runs a client, logs the state of pods if it is still
// running after stall, and returns its result unchecked.
func (e *env) runWatchedAfter(p *sim.Pod, spec sim.ClientSpec, stall time.Duration, pods ...*sim.Pod) *sim.ClientResult {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type out struct {
		res *sim.ClientResult
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := p.RunClient(ctx, spec)
		done <- out{res, err}
	}()
	var o out
	select {
	case o = <-done:
	case <-time.After(stall):
		e.t.Logf("client %s in %s still running after %v: state", spec.Mode, p.Name, stall)
		e.dumpState(pods...)
		o = <-done
	}
	if o.err != nil {
		e.t.Fatal(o.err)
	}
	return o.res
}

// dumpState logs the pods' TCP sockets (ss), the recorded directions,
// the counters and the sidecars' flow-control and buffer stats.
func (e *env) dumpState(pods ...*sim.Pod) {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range pods {
		out, err := exec.CommandContext(ctx, "nsenter", "--net="+p.Netns, "ss", "-tmnoie").CombinedOutput()
		t.Logf("pod %s sockets (%v):\n%s", p.Name, err, out)
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+p.Netns, "nstat", "-asz").CombinedOutput()
		var nz []string
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[1] != "0" && strings.HasPrefix(f[0], "Tcp") {
				nz = append(nz, f[0]+"="+f[1])
			}
		}
		t.Logf("pod %s nstat (%v): %s", p.Name, err, strings.Join(nz, " "))
		if p.Sidecar() != nil {
			t.Logf("pod %s Envoy: %s", p.Name, envoyStats(t, p, "flow_control|cx_active|buffered|rx_bytes|tx_bytes"))
			t.Logf("pod %s Envoy epoll: %s", p.Name, envoyEpoll(p.Sidecar().Pid()))
			// Its log (sim.EnvEnvoyLogLevel=debug tells why it closed
			// or waits) goes to a file: it may be megabytes.
			f, err := os.CreateTemp("", "mesh-accel-stall-"+p.Name+"-envoy-*.log")
			if err == nil {
				_, err = f.WriteString(p.Sidecar().Stderr())
				f.Close()
				t.Logf("pod %s Envoy log: %s (%v)", p.Name, f.Name(), err)
			}
		}
	}
	ds, err := e.node.Directions()
	t.Logf("directions (%v):", err)
	for _, d := range ds {
		t.Logf("  %+v", d)
	}
	t.Logf("counters: %v", e.counters())
}

// longStreams starts the probe's long streams from a to b (two uploads to
// a slow app reader, two downloads read slowly, about 6 MB/s each, for
// far longer than the test) and returns once each has moved 1 MiB.
func longStreams(t *testing.T, ctx context.Context, a, b *sim.Pod) *sim.Proc {
	t.Helper()
	return startRole(t, ctx, a, envEnvoyProbe, probeSpec{Mode: "streams", Target: b.AppTarget(false), Streams: 2,
		Bytes: 1 << 30, ReadSleep: 10 * time.Millisecond, ReadyAfter: 1 << 20, Seed: 41, Timeout: time.Minute}, true)
}

// killSidecarUnder SIGKILLs p's Envoy while the long streams run, then
// checks how they ended (checkCut) and that the maps empty again.
func (e *env) killSidecarUnder(name string, p *sim.Pod, long *sim.Proc) probeResult {
	e.t.Helper()
	if err := p.Sidecar().Kill(); err != nil {
		e.t.Fatal(err)
	}
	<-p.Sidecar().Done()
	res := waitRole[probeResult](e.t, long)
	if res.Error != "" {
		e.t.Fatal(res.Error)
	}
	checkCut(e.t, name, res)
	e.waitNoConns()
	return res
}

// checkCut checks the long streams' result: every stream ended with an
// error (the proxy died under it), none stalled until its deadline, none
// received wrong bytes.
func checkCut(t *testing.T, name string, res probeResult) {
	t.Helper()
	if res.Corrupt != 0 || res.Outcomes["complete"] != 0 || res.Outcomes["timeout"] != 0 {
		t.Errorf("%s: streams cut by the kill: outcomes %v, %d corrupt; want all ended by an error, none stalled: %v",
			name, res.Outcomes, res.Corrupt, res.Notes)
	}
	n := 0
	for _, v := range res.Outcomes {
		n += v
	}
	if n != 4 {
		t.Errorf("%s: %d streams reported, want 4", name, n)
	}
}

// envoyEpoll describes what Envoy (pid or its descendant named envoy)
// waits for: each socket registered in its epoll instances with the
// events asked (EPOLLIN 0x1, EPOLLOUT 0x4, EPOLLRDHUP 0x2000, EPOLLET
// 0x80000000) and the socket's inode (ss -e shows it as ino:), so that a
// stall tells a reading disabled from a wake-up lost.
func envoyEpoll(pid int) string {
	envoy := findProc(pid, "envoy", 4)
	if envoy == 0 {
		return "no envoy process"
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", envoy)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return err.Error()
	}
	inode := map[string]string{}
	var epolls []string
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(target, "socket:["):
			inode[e.Name()] = strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")
		case target == "anon_inode:[eventpoll]":
			epolls = append(epolls, e.Name())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "envoy pid %d", envoy)
	for _, ep := range epolls {
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", envoy, ep))
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "\n  epoll fd %s:", ep)
		for _, l := range strings.Split(string(info), "\n") {
			f := strings.Fields(l)
			if len(f) >= 4 && f[0] == "tfd:" && inode[f[1]] != "" {
				fmt.Fprintf(&b, " [fd %s ino %s events %s]", f[1], inode[f[1]], f[3])
			}
		}
	}
	return b.String()
}

// findProc returns pid or its first descendant (depth levels down) whose
// command is comm, 0 when none.
func findProc(pid int, comm string, depth int) int {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == comm {
		return pid
	}
	if depth == 0 {
		return 0
	}
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, k := range strings.Fields(string(kids)) {
		var c int
		if _, err := fmt.Sscan(k, &c); err == nil {
			if found := findProc(c, comm, depth-1); found != 0 {
				return found
			}
		}
	}
	return 0
}

// watchdog logs the state of pods (dumpState) if stop is not called
// within after: for runs that end only at their own deadline.
func (e *env) watchdog(after time.Duration, pods ...*sim.Pod) (stop func()) {
	done := make(chan struct{})
	fired := make(chan struct{})
	go func() {
		defer close(fired)
		select {
		case <-done:
		case <-time.After(after):
			e.t.Logf("still running after %v: state", after)
			e.dumpState(pods...)
		}
	}()
	return func() { close(done); <-fired }
}
