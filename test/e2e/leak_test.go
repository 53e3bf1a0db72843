package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// holderConns is the number of connections the holder role keeps open.
const holderConns = 4

// keep accepts connections, reads until the client's EOF, then keeps its
// side open for Duration before closing (the peer that keeps them open).
func (s isoSpec) keep() error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false) // Go listens with MPTCP by default
	ln, err := lc.Listen(context.Background(), "tcp4", s.Addr)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			_, _ = io.Copy(io.Discard, c)
			time.Sleep(s.Duration)
			c.Close()
		}()
	}
}

// hold opens holderConns connections to Addr, sends a byte on each, then
// waits to be killed.
func (s isoSpec) hold() error {
	var conns []net.Conn
	for i := 0; i < holderConns; i++ {
		c, err := net.Dial("tcp4", s.Addr)
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte{'h'}); err != nil {
			return err
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	select {}
}

// Both pods of accelerated connections are deleted (detached) while the
// connections are established and their peer keeps them open; then the
// client's process dies (FIN_WAIT), the peer closes later (TIME_WAIT).
// No close callback runs for detached pods, so the sweeper the installer
// runs removes what the sockets left: within 60 s of the last socket
// closing every map is back to empty and no connection is listed.
func TestNoLeakAfterPodDeletion(t *testing.T) {
	e := newEnv(t, optsDefault)
	a := e.pod("a", false, &trustedAll)
	b := e.pod("b", false, &trustedAll)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var swept atomic.Int64
	go e.node.SweepEvery(ctx, time.Second, func(s bpf.Swept, err error) {
		if err != nil {
			t.Errorf("sweep: %v", err)
		}
		swept.Add(int64(s.Directions + s.Pending))
	})
	addr := net.JoinHostPort(b.IPv4.String(), "9090")
	runIso(t, ctx, b, isoSpec{Role: "keeper", Addr: addr, Duration: 2 * time.Second})
	holder := runIso(t, ctx, a, isoSpec{Role: "holder", Addr: addr})
	waitUsage(t, e.node, func(u bpf.Usage) bool { return u.Directions == 2*holderConns })

	// CNI DEL of both pods while the connections are established.
	for _, p := range []string{a.Name, b.Name} {
		if err := e.node.DetachPod(p); err != nil {
			t.Fatal(err)
		}
	}
	_ = holder.Kill() // FIN_WAIT, then TIME_WAIT once the keeper closes
	closed := time.Now()
	waitUsage(t, e.node, func(u bpf.Usage) bool {
		return u.Sockets == 0 && u.Targets == 0 && u.Directions == 0 && u.Pending == 0 && u.Pods == 0
	})
	ds, err := e.node.Directions()
	if err != nil || len(ds) != 0 {
		t.Errorf("connections still listed: %v (%v)", ds, err)
	}
	if swept.Load() == 0 {
		t.Errorf("the sweeper removed nothing: the close callbacks ran after all (the test no longer shows the leak)")
	}
	t.Logf("maps empty %v after the client died; sweeper removed %d entries", time.Since(closed).Round(time.Second), swept.Load())
}

// waitUsage waits up to 60 s for the maps' usage to satisfy ok.
func waitUsage(t *testing.T, n *bpf.Node, ok func(bpf.Usage) bool) {
	t.Helper()
	var u bpf.Usage
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if u, err = n.Usage(); err == nil && ok(u) {
			return
		}
	}
	t.Fatalf("map usage %+v (%v) after 60 s", u, err)
}
