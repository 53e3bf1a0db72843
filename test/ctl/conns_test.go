package ctltest

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mesh-accel/mesh-accel/test/sim"
)

// connRow is a row of conns -o json.
type connRow struct {
	Client, Server struct {
		Addr netip.AddrPort
		Pod  string
	}
	Up, Down *struct {
		Redirect bool
		Bytes    uint64
	}
}

// conns shows, with the default rules, the two paired hops of a request
// through both sidecars, each as one row with both ends and their pods.
func TestConns(t *testing.T) {
	e := newEnv(t)
	a := e.pod("a", oneWayCfg)
	b := e.pod("b", oneWayCfg)
	wait := e.background(a, sim.ClientSpec{Mode: sim.ModeRR, Target: b.AppTarget(false), Duration: 3 * time.Second})
	var rows []connRow
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		e.json(&rows, "conns")
		if len(rows) == 2 && rows[0].Up != nil && rows[0].Up.Bytes > 0 {
			break
		}
	}
	if len(rows) != 2 {
		t.Fatalf("want 2 connections, got %+v", rows)
	}
	out := e.ok("conns")
	var filtered [][]connRow
	for _, f := range [][]string{{"--pod", "shop/b"}, {"--port", "15001"}, {"--addr", "127.0.0.6"},
		{"--pod", "shop/a", "--port", "8080"}} {
		var r []connRow
		e.json(&r, append([]string{"conns"}, f...)...)
		filtered = append(filtered, r)
	}
	if res := wait(); !res.OK {
		t.Fatalf("rr client: %v", res.Errors)
	}

	// app a -> outbound sidecar a (127.0.0.1:15001 through REDIRECT):
	// redirected towards the sidecar, on the stack back to the app.
	out1 := rows[0]
	if out1.Client.Addr.Addr() != a.IPv4 || out1.Server.Addr != netip.MustParseAddrPort("127.0.0.1:15001") ||
		out1.Client.Pod != "shop/a" || out1.Server.Pod != "shop/a" ||
		out1.Up == nil || !out1.Up.Redirect || out1.Up.Bytes == 0 || out1.Down == nil || out1.Down.Redirect {
		t.Errorf("app -> outbound sidecar: %+v up %+v down %+v", out1, out1.Up, out1.Down)
	}
	// inbound sidecar b (127.0.0.6) -> app b.
	in := rows[1]
	if in.Client.Addr.Addr() != sim.InboundSourceV4 || in.Server.Addr.Port() != 8080 || in.Client.Pod != "shop/b" ||
		in.Server.Pod != "shop/b" || in.Up == nil || in.Up.Redirect || in.Down == nil || !in.Down.Redirect {
		t.Errorf("inbound sidecar -> app: %+v up %+v down %+v", in, in.Up, in.Down)
	}
	for i, want := range []netip.AddrPort{in.Client.Addr, out1.Client.Addr, in.Client.Addr} {
		if len(filtered[i]) != 1 || filtered[i][0].Client.Addr != want {
			t.Errorf("filter %d: %+v", i, filtered[i])
		}
	}
	if len(filtered[3]) != 0 {
		t.Errorf("--pod shop/a --port 8080: %+v", filtered[3])
	}
	for _, want := range []string{"CLIENT POD", "127.0.0.1:15001", "shop/a", "stack", "2 accelerated connections"} {
		if !strings.Contains(out, want) {
			t.Errorf("conns lacks %q:\n%s", want, out)
		}
	}
	e.waitNoConns()
	if out := e.ok("conns"); !strings.Contains(out, "0 accelerated connections") {
		t.Errorf("conns after the client: %s", out)
	}
}
