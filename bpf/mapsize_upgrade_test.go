package bpf

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLayoutNamesMapSize(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, LayoutVersion},
		{Options{MapSize: DefaultMapSize}, LayoutVersion},
		{Options{MapSize: 262144}, LayoutVersion + "-262144"},
		{Options{MapSize: 8, layout: "v0-test"}, "v0-test-8"},
	} {
		if got := c.o.Layout(); got != c.want {
			t.Errorf("Options{MapSize: %d}.Layout() = %q, want %q", c.o.MapSize, got, c.want)
		}
		if got := filepath.Base(c.o.Dir()); got != c.want {
			t.Errorf("Options{MapSize: %d}.Dir() ends in %q, want %q", c.o.MapSize, got, c.want)
		}
	}
}

func TestCheckMapSize(t *testing.T) {
	for _, size := range []uint32{MinMapSize, 16384, DefaultMapSize, 262144, MaxMapSize} {
		if err := CheckMapSize(size); err != nil {
			t.Errorf("CheckMapSize(%d) = %v", size, err)
		}
	}
	for _, size := range []uint32{0, 1, 512, MinMapSize + 1, 100000, MaxMapSize * 2, 1<<32 - 1} {
		err := CheckMapSize(size)
		if err == nil || !strings.Contains(err.Error(), "power of two from 1024 to 1048576") {
			t.Errorf("CheckMapSize(%d) = %v, want the bounds named", size, err)
		}
	}
}

const envMapSizeHelper = "MESH_ACCEL_TEST_MAP_SIZE_HELPER"

// mapSizeStream is what each side of a connection sends in the helper.
const mapSizeStream = 4 << 20

// mapSizeWrite is the size of each write of the stream.
const mapSizeWrite = 16 << 10

// TestMapSizeHelper is the child process of TestUpgradeMapSize, run in a
// pod's cgroup: a connection to itself, paired (a byte each way), then
// "paired" on stdout; once told (a line on stdin) it streams
// mapSizeStream bytes each way at once over that connection, then opens a
// second connection and does the same, checking every byte, and prints
// "ok". Run as a test of its own, it does nothing.
func TestMapSizeHelper(t *testing.T) {
	if os.Getenv(envMapSizeHelper) == "" {
		return
	}
	if err := mapSizeHelper(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ok")
}

func mapSizeHelper() error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	old, err := pairedConn(ln)
	if err != nil {
		return err
	}
	defer old[0].Close()
	defer old[1].Close()
	fmt.Println("paired")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	if err := streamBothWays(old); err != nil {
		return fmt.Errorf("the connection paired before the size change: %w", err)
	}
	fresh, err := pairedConn(ln)
	if err != nil {
		return err
	}
	defer fresh[0].Close()
	defer fresh[1].Close()
	if err := streamBothWays(fresh); err != nil {
		return fmt.Errorf("the connection opened after the size change: %w", err)
	}
	return nil
}

// pairedConn opens a connection to ln and sends a byte each way.
func pairedConn(ln net.Listener) ([2]net.Conn, error) {
	var d net.Dialer
	d.SetMultipathTCP(false)
	c, err := d.Dial("tcp4", ln.Addr().String())
	if err != nil {
		return [2]net.Conn{}, err
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		return [2]net.Conn{}, err
	}
	one := make([]byte, 1)
	for _, dir := range [][2]net.Conn{{c, s}, {s, c}} {
		if _, err := dir[0].Write(one); err != nil {
			return [2]net.Conn{c, s}, err
		}
		if _, err := io.ReadFull(dir[1], one); err != nil {
			return [2]net.Conn{c, s}, err
		}
	}
	return [2]net.Conn{c, s}, nil
}

// streamBothWays sends mapSizeStream bytes from each end of conn to the
// other at once, and checks that each end received the other's bytes in
// order.
func streamBothWays(conn [2]net.Conn) error {
	errs := make(chan error, 4)
	for i, from := range conn {
		to := conn[1-i]
		data := pattern(byte(i), mapSizeStream)
		go func() {
			// In writes well under the flow-control bound, so that a
			// reader keeping up gets them redirected.
			for off := 0; off < len(data); off += mapSizeWrite {
				if _, err := from.Write(data[off:min(off+mapSizeWrite, len(data))]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
		go func() {
			got := make([]byte, len(data))
			if _, err := io.ReadFull(to, got); err != nil {
				errs <- fmt.Errorf("read: %w", err)
				return
			}
			if !bytes.Equal(got, data) {
				errs <- errors.New("the bytes received are not those sent")
				return
			}
			errs <- nil
		}()
	}
	var all []error
	for range 4 {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// pattern is n bytes, a different stream for every seed, none of whose
// 32-byte blocks repeats: a byte lost, duplicated or reordered shows.
func pattern(seed byte, n int) []byte {
	out := make([]byte, 0, n+sha256.Size)
	block := sha256.Sum256([]byte{seed})
	for len(out) < n {
		out = append(out, block[:]...)
		block = sha256.Sum256(block[:])
	}
	return out[:n]
}

// A node whose installer starts with another map size: a new state of the
// new size is made beside the older one, the pod moves to it as an upgrade
// moves pods, its connection paired under the older state carries on there
// (every byte, both ways), its new connections are accelerated by the new
// state, whose fair share follows the new size, and the older state goes
// once its connections closed.
func TestUpgradeMapSize(t *testing.T) {
	root := upgradeRoot(t)
	old, child, paired := pairedUnderOlder(t, Options{Root: root}, "TestMapSizeHelper", envMapSizeHelper)
	defer old.Close()

	const size = 4096
	n, err := OpenNode(Options{Root: root, MapSize: size})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Remove()
	if filepath.Base(n.Dir()) != LayoutVersion+"-4096" || n.Dir() == old.Dir() {
		t.Fatalf("state of %d entries at %s, the older one at %s: want a state of its own", size, n.Dir(), old.Dir())
	}
	checkShare(t, old, DefaultMapSize, DefaultMapSize/512)
	checkShare(t, n, size, size/512)
	r, err := n.Upgrade()
	if err != nil || r.Moved != 1 || len(r.Retiring) != 1 || r.Retiring[0].Sockets == 0 {
		t.Fatalf("Upgrade = %+v, %v; want the pod moved and the older state kept for its connection", r, err)
	}
	if pods, err := n.Pods(); err != nil || len(pods) != 1 || pods[0].ID != "p" {
		t.Fatalf("pods of the new state: %+v, %v", pods, err)
	}
	if r, err := n.Upgrade(); err != nil || r.Moved != 0 || len(r.Retiring) != 1 {
		t.Errorf("second Upgrade = %+v, %v; want nothing moved, the older state still retiring", r, err)
	}
	again, err := OpenNode(Options{Root: root, MapSize: size})
	if err != nil {
		t.Fatal(err)
	}
	if again.Dir() != n.Dir() {
		t.Errorf("reopened at %s, want %s", again.Dir(), n.Dir())
	}
	again.Close()

	newBefore, err := n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if rest := child.proceed(t); !strings.HasPrefix(rest, "ok\n") {
		t.Fatalf("helper: %q", rest)
	}
	oldAfter, err := old.Counters()
	if err != nil {
		t.Fatal(err)
	}
	// Flow control may send some of a stream on the stack (a reader
	// behind): accelerated means paired and redirecting, every byte
	// arriving in order (the helper checks them).
	if d := oldAfter.Sub(paired); d["connections_accepted"] != 0 || d["messages_redirected"] == 0 || d["bytes_redirected"] == 0 {
		t.Errorf("the older state's counters while both connections ran: %v; want the first connection's "+
			"messages redirected there and no new pair", d)
	}
	newAfter, err := n.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if d := newAfter.Sub(newBefore); d["connections_accepted"] != 1 || d["messages_redirected"] <= 2 || d["bytes_redirected"] <= 2 {
		t.Errorf("the new state's counters: %v; want the second connection paired there and its stream redirected", d)
	}

	var removed bool
	for i := 0; i < 100 && !removed; i++ {
		time.Sleep(time.Duration(i) * time.Millisecond)
		if r, err = n.Upgrade(); err != nil {
			t.Fatal(err)
		}
		removed = len(r.Removed) == 1 && r.Removed[0] == old.Dir()
	}
	if !removed {
		t.Fatalf("the older state was not removed once its connection closed: %+v", r)
	}
}

func checkShare(t *testing.T, n *Node, capacity, guaranteed uint32) {
	t.Helper()
	sh, err := n.Share()
	if err != nil {
		t.Fatal(err)
	}
	pods := min(DefaultGuaranteedPods, capacity/(2*guaranteed))
	if sh.Capacity != capacity || sh.Guaranteed != guaranteed || sh.GuaranteedPods != pods ||
		sh.Pool != capacity-pods*guaranteed {
		t.Errorf("share of %s: %+v; want capacity %d, %d guaranteed for %d pods, the pool the rest",
			n.Dir(), sh, capacity, guaranteed, pods)
	}
	if got := n.maps.SockOpsMap.MaxEntries(); got != capacity {
		t.Errorf("sock_ops_map of %s holds %d entries, want %d", n.Dir(), got, capacity)
	}
}
