package ctl

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// The two directions of a connection make one row, whatever their order;
// loopback pairs of different pods stay apart.
func TestPairDirections(t *testing.T) {
	lo1 := netip.MustParseAddrPort("127.0.0.1:5000")
	lo2 := netip.MustParseAddrPort("127.0.0.1:6000")
	ds := []bpf.Direction{
		{From: sideA, To: addrA, FromPod: 100, ToPod: 100}, // down first
		{From: addrA, To: sideA, FromPod: 100, ToPod: 100, Connecting: true, Redirect: true, Bytes: 2048, Messages: 2},
		// the same loopback pair in two pods (network namespaces 1 and 2)
		{From: lo1, To: lo2, Netns: 1, ToNetns: 1, FromPod: 100, ToPod: 100, Connecting: true, Redirect: true},
		{From: lo1, To: lo2, Netns: 2, ToNetns: 2, FromPod: 200, ToPod: 200, Connecting: true, Redirect: true},
		{From: lo2, To: lo1, Netns: 2, ToNetns: 2, FromPod: 200, ToPod: 200, Redirect: true},
		{From: lo2, To: lo1, Netns: 1, ToNetns: 1, FromPod: 100, ToPod: 100, Redirect: true},
		// only one direction left (closing)
		{From: appB, To: inbound, FromPod: 200, ToPod: 100, Redirect: true},
	}
	rows := pairDirections(ds, podNames{100: "shop/cart", 200: "shop/pay"})
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Client.Pod != r.Server.Pod && r.Client.Addr != inbound {
			t.Errorf("row mixes pods: %+v", r)
		}
	}
	var first connRow
	for _, r := range rows {
		if r.Client.Addr == addrA {
			first = r
		}
	}
	if first.Server.Addr != sideA || first.Up == nil || first.Up.Bytes != 2048 || first.Down == nil || first.Down.Redirect {
		t.Errorf("app -> sidecar row: %+v up %+v down %+v", first, first.Up, first.Down)
	}
	for _, r := range rows {
		if r.Client.Addr == inbound && (r.Up != nil || r.Down == nil || r.Server.Addr != appB) {
			t.Errorf("half-recorded connection: %+v", r)
		}
	}
}

func TestConnsFilters(t *testing.T) {
	eng := newFakeEngine()
	eng.dirs = liveDirections()
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"--pod", "shop/cart"}, 2},
		{[]string{"--pod", "shop/pay"}, 1},
		{[]string{"--port", "15001"}, 1},
		{[]string{"--port", "8080", "--pod", "shop/cart"}, 1},
		{[]string{"--port", "15001", "--pod", "shop/pay"}, 0},
		{[]string{"--addr", "127.0.0.6"}, 1},
		{[]string{"--addr", "::ffff:10.0.0.2"}, 1}, // IPv4-mapped matches IPv4
		{[]string{"--addr", "10.9.9.9"}, 0},
	} {
		var rows []connRow
		out := mustRun(t, eng, defaultRecords(t), append([]string{"conns", "-o", "json"}, tc.args...)...)
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v: %v: %s", tc.args, err, out)
		}
		if len(rows) != tc.want {
			t.Errorf("conns %v: %d rows, want %d", tc.args, len(rows), tc.want)
		}
	}
}

func TestConnsTable(t *testing.T) {
	eng := newFakeEngine()
	eng.dirs = liveDirections()
	eng.dirs[0].Bytes, eng.dirs[0].Messages = 3<<20+512<<10, 12
	eng.dirs[0].Backlog, eng.dirs[0].Held, eng.dirs[0].Holds = 4<<20, true, 2
	eng.dirs[2].Backlog, eng.dirs[2].Holds = 64<<10, 1
	eng.dirs[3].PeerGone = true // its reader closed unseen
	got := mustRun(t, eng, defaultRecords(t), "conns")
	want := `CLIENT           CLIENT POD  SERVER           SERVER POD  CLIENT->SERVER                                  SERVER->CLIENT
10.0.0.2:40000   shop/cart   127.0.0.1:15001  shop/cart   3.5 MiB in 12 msgs, backlog 4.0 MiB, held (2x)  stack
127.0.0.6:41000  shop/cart   10.0.0.3:8080    shop/pay    0 B in 0 msgs, backlog 64.0 KiB, was held 1x    stack, reader gone
2 accelerated connections
`
	if got != want {
		t.Errorf("conns:\n%s\nwant:\n%s", got, want)
	}
	if out := mustRun(t, newFakeEngine(), "", "conns", "-o", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("no connections in JSON: %q, want []", out)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB",
		5 << 30: "5.0 GiB", 1 << 60: "1.0 EiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestTable(t *testing.T) {
	var b strings.Builder
	tb := newTable(&b, "A", "LONGER")
	tb.row("x\ty", "")
	tb.row(12345, "z\nw")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	want := "A      LONGER\nx y    -\n12345  z w\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}
