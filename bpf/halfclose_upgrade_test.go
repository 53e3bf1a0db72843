package bpf

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const envHalfCloseHelper = "MESH_ACCEL_TEST_HALF_CLOSE_HELPER"

// halfCloseReply is what the server writes after the client's FIN: more
// than a read takes at once, all redirected if nothing moves it to the
// stack.
const halfCloseReply = 256 << 10

// TestHalfCloseHelper is the child process of TestHalfCloseAcrossUpgrade,
// run in a pod's cgroup: a connection to itself, paired (a byte each way),
// then "paired" on stdout; once told (a line on stdin) the client sends a
// request and shuts its write side, the server reads it to its end,
// replies and closes, and the client reads the reply only after the
// server's FIN has arrived (its socket then leaves the socket map). It
// prints how many bytes of the reply it got. Run as a test of its own, it
// does nothing.
func TestHalfCloseHelper(t *testing.T) {
	if os.Getenv(envHalfCloseHelper) == "" {
		return
	}
	got, err := halfCloseHelper()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("got %d\n", got)
}

func halfCloseHelper() (int, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	var d net.Dialer
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		return 0, err
	}
	defer s.Close()
	one := make([]byte, 1)
	for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
		if _, err := dir[0].Write(one); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(dir[1], one); err != nil {
			return 0, err
		}
	}
	fmt.Println("paired")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return 0, err
	}
	served := make(chan error, 1)
	go func() {
		defer s.Close()
		if _, err := io.Copy(io.Discard, s); err != nil {
			served <- err
			return
		}
		_, err := s.Write(make([]byte, halfCloseReply))
		served <- err
	}()
	if _, err := c.Write(make([]byte, 1000)); err != nil {
		return 0, err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	if err := <-served; err != nil {
		return 0, fmt.Errorf("server: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // the server's FIN arrives
	reply, err := io.ReadAll(c)
	return len(reply), err
}

// A connection paired under the state of an older layout, whose client
// half-closes after the pod moved to this layout: the older state's
// sockops program still sees the pod's sockets (the retiring link), so the
// reply written after the client's FIN takes the stack and reaches the
// client whole, although the client reads it only once its socket has
// left the socket map (which drops redirected bytes not read yet).
func TestHalfCloseAcrossUpgrade(t *testing.T) {
	root := upgradeRoot(t)
	old, child, mid := pairedUnderOlder(t, Options{Root: root, layout: "v0-test"}, "TestHalfCloseHelper", envHalfCloseHelper)
	defer old.Close()

	n, err := OpenNode(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	if r, err := n.Upgrade(); err != nil || r.Moved != 1 {
		t.Fatalf("Upgrade = %+v, %v; want the pod moved", r, err)
	}
	if _, err := os.Stat(filepath.Join(old.Dir(), retiringDir, "p")); err != nil {
		t.Errorf("no retiring link for the moved pod: %v", err)
	}

	rest := child.proceed(t)
	if want := fmt.Sprintf("got %d\n", halfCloseReply); !strings.HasPrefix(rest, want) {
		t.Errorf("the client read %q of the reply after its half-close, want %q", rest, want)
	}
	after, err := old.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(mid); d["stack_after_half_close"] != 1 || d["accelerated_pairs_closed"] != 1 {
		t.Errorf("the older state's program did not handle the half-close and close: %v", d)
	}

	// Once the connection is gone, the older state goes with its link.
	var removed bool
	for i := 0; i < 100 && !removed; i++ {
		time.Sleep(time.Duration(i) * time.Millisecond)
		r, err := n.Upgrade()
		if err != nil {
			t.Fatal(err)
		}
		removed = len(r.Removed) == 1
	}
	if !removed {
		t.Fatal("the older state was not removed once its connection closed")
	}
}
