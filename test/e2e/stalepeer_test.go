package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/test/sim"
)

// envStalePeer makes the test binary one end of the stale-peer test
// ([stalePeerSpec] as JSON).
const envStalePeer = "MESH_ACCEL_TEST_STALE_PEER"

func init() { roles[envStalePeer] = stalePeerRole }

// stalePeerSpec configures both ends. The roles and the test meet through
// files in Dir: the test creates "close" once the reader's pod is
// detached, the writer creates "sent" after its writes into the closed
// reader, the test creates "done" when the writer may close.
type stalePeerSpec struct {
	Role  string // "reader" or "writer"
	Addr  string // the reader's listening address
	Dir   string
	Bytes int64 // streamed on each of the two connections
	// Late is the number of writes of 4 KiB the writer tries on the first
	// connection once its reader closed.
	Late int
}

type stalePeerResult struct {
	roleError
	// Reader: bytes read on each connection and whether they were the
	// stream's.
	Read   [2]int64
	HashOK [2]bool
	// Writer: late writes that succeeded, and the error that ended them.
	LateOK  int
	LateErr string
}

func stalePeerRole(js string) { roleMain(js, stalePeerSpec.run) }

func (s stalePeerSpec) run(res *stalePeerResult) error {
	if s.Role == "reader" {
		return s.read(res)
	}
	return s.write(res)
}

// waitFile waits up to 50 s for the test to create name in the spec's Dir.
func (s stalePeerSpec) waitFile(name string) error {
	for deadline := time.Now().Add(50 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(s.Dir, name)); err == nil {
			return nil
		}
	}
	return fmt.Errorf("no %s from the test", name)
}

// read accepts two connections, reads Bytes of the stream of seed i+1 on
// connection i, then closes both once the test says so (its pod detached:
// no close callback runs).
func (s stalePeerSpec) read(res *stalePeerResult) error {
	ln, err := listenTCP("tcp4", s.Addr, 0)
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Println("ready")
	var conns [2]net.Conn
	for i := range conns {
		if conns[i], err = ln.Accept(); err != nil {
			return err
		}
		defer conns[i].Close()
	}
	for i, c := range conns {
		want, got := make([]byte, s.Bytes), make([]byte, s.Bytes)
		_, _ = sim.NewStream(int64(i + 1)).Read(want)
		n, err := io.ReadFull(c, got)
		res.Read[i], res.HashOK[i] = int64(n), bytes.Equal(got, want)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
	}
	if err := s.waitFile("close"); err != nil {
		return err
	}
	for _, c := range conns {
		if err := c.Close(); err != nil {
			return err
		}
	}
	return nil
}

// write opens two connections and streams Bytes on each (seed i+1 on
// connection i). Once its reader closed (EOF), it keeps writing on the
// first; the second stays open and idle until the test says "done".
func (s stalePeerSpec) write(res *stalePeerResult) error {
	var conns [2]*net.TCPConn
	for i := range conns {
		c, err := net.Dial("tcp4", s.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		conns[i] = c.(*net.TCPConn)
	}
	buf := make([]byte, 16<<10)
	for i, c := range conns {
		st := sim.NewStream(int64(i + 1))
		for left := s.Bytes; left > 0; left -= int64(len(buf)) {
			b := buf[:min(left, int64(len(buf)))]
			_, _ = st.Read(b)
			if _, err := c.Write(b); err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
	}
	fmt.Println("ready")
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Second))
		if n, err := c.Read(buf); !errors.Is(err, io.EOF) {
			return fmt.Errorf("connection %d: read %d bytes, %v; want EOF (the reader closed)", i, n, err)
		}
	}
	for range s.Late {
		_ = conns[0].SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := conns[0].Write(buf[:4<<10]); err != nil {
			res.LateErr = err.Error()
			break
		}
		res.LateOK++
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "sent"), nil, 0o644); err != nil {
		return err
	}
	return s.waitFile("done")
}

// A reader whose pod was detached closes: no close callback runs, so the
// directions of its pairs keep the kernel address of its socket, which is
// freed (and may be reused by another socket) once its FIN was
// acknowledged. Its writers must not trust what they read there: the
// first write into the closed reader finds the recorded socket gone
// (fallback_stale_peer) and takes the stack, flow control holds nothing,
// and `conns` shows the direction's reader gone. A writer that stays
// connected but idle keeps its socket in the socket map: the sweep removes
// its direction because its reader is in none.
func TestStalePeerAfterUnseenClose(t *testing.T) {
	const streamed = 128 << 10
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	dir := roleDir(t)
	ctx := roleCtx(t)
	spec := stalePeerSpec{Addr: net.JoinHostPort(b.IPv4.String(), "9090"), Dir: dir, Bytes: streamed, Late: 64}
	spec.Role = "reader"
	reader := startRole(t, ctx, b, envStalePeer, spec, true)
	spec.Role = "writer"
	before := e.counters()
	writer := startRole(t, ctx, a, envStalePeer, spec, true)
	defer os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)

	// Both connections are paired both ways, and the streams were
	// redirected.
	waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Directions == 4 })
	if err := e.node.DetachPod(b.Name); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "close"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rr := waitRole[stalePeerResult](t, reader)
	if rr.Error != "" || rr.Read != [2]int64{streamed, streamed} || rr.HashOK != [2]bool{true, true} {
		t.Fatalf("reader: %+v; want both streams whole", rr)
	}
	waitFileOf(t, writer, filepath.Join(dir, "sent"))
	c := e.counters().Sub(before)
	wantPositive(t, c, "messages_redirected", "fallback_stale_peer")
	want(t, c, map[string]uint64{"flow_control_held": 0})

	// The idle writer's direction is listed with its reader gone, then swept.
	idle := e.writerDirections(a)
	if len(idle) != 1 || !idle[0].PeerGone || idle[0].Backlog != 0 {
		t.Errorf("directions of the writer's pod into the closed reader: %+v; want one (the idle connection's), "+
			"its reader gone, no backlog", idle)
	}
	s, err := e.node.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if left := e.writerDirections(a); len(left) != 0 {
		t.Errorf("after the sweep (%+v) the writer still has directions into the closed reader: %+v", s, left)
	}
	if s.PeerGone == 0 {
		t.Errorf("sweep %+v: no direction removed for its reader", s)
	}
	if err := os.WriteFile(filepath.Join(dir, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wr := waitRole[stalePeerResult](t, writer)
	if wr.Error != "" {
		t.Errorf("writer: %s", wr.Error)
	}
	t.Logf("late writes into the closed reader: %d accepted, then %q; counters %v; swept %+v", wr.LateOK, wr.LateErr, c, s)
	e.waitNoConns()
}

// roleDir makes a folder the roles (uid 1000) can write in.
func roleDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mesh-accel-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writerDirections lists the directions sent from pod p.
func (e *env) writerDirections(p *sim.Pod) []bpf.Direction {
	e.t.Helper()
	ds, err := e.node.Directions()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []bpf.Direction
	for _, d := range ds {
		if d.From.Addr() == p.IPv4 {
			out = append(out, d)
		}
	}
	return out
}

// waitFileOf waits up to 60 s for a role to create path, and fails the test
// with the role's output if it ends first.
func waitFileOf(t *testing.T, p *sim.Proc, path string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("role ended before %s: %s %s", filepath.Base(path), p.Stdout(), p.Stderr())
		default:
		}
	}
	t.Fatalf("no %s from the role after 60 s", filepath.Base(path))
}
