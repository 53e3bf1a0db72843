package bpf

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// The maps that can fill up are every hash and socket-hash map of the node
// state, and nothing else.
func TestMapFillNames(t *testing.T) {
	got := MapFillNames()
	want := []string{"pod_usage", "sock_helper_map", "sock_ops_map", "sock_param_map", "sock_proxy_map", "sock_rx_map"}
	if !slices.Equal(got, want) {
		t.Errorf("MapFillNames() = %v, want %v", got, want)
	}
}

// MapFill counts the entries of each map and reports its capacity; the
// count follows inserts and deletes.
func TestMapFill(t *testing.T) {
	n := testNode(t, Options{MapSize: 64})
	fill := mapFillByName(t, n)
	for _, name := range MapFillNames() {
		f, ok := fill[name]
		switch {
		case !ok:
			t.Errorf("%s: not reported", name)
		case f.Entries != 0:
			t.Errorf("%s: %d entries in fresh state", name, f.Entries)
		case f.MaxEntries == 0:
			t.Errorf("%s: capacity 0", name)
		}
	}
	if c := fill["sock_proxy_map"].MaxEntries; c != 64 {
		t.Errorf("sock_proxy_map capacity %d, want the MapSize 64", c)
	}

	// The per-pod maps are walked.
	if err := n.maps.PodUsage.Update(uint64(7), int64(0), ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	if got := mapFillByName(t, n)["pod_usage"].Entries; got != 1 {
		t.Errorf("pod_usage: %d entries, want 1", got)
	}

	// Entries the programs never counted (written here by hand, as a
	// crashed sweep leaves its deletes uncounted) show after a sweep
	// cycle's recount: the sweep removes these (no socket), so the counts
	// end where the maps are.
	for i := range 5 {
		k := meshSockKey{LocalPort: uint32(1000 + i), Netns: 1}
		if err := n.maps.SockProxyMap.Update(k, meshProxyVal{}, ebpf.UpdateNoExist); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.fillAdd(meshFillKeptFILL_HELPER, 3); err != nil {
		t.Fatal(err)
	}
	if got := mapFillByName(t, n)["sock_helper_map"].Entries; got != 3 {
		t.Errorf("sock_helper_map: %d entries counted, want the 3 added", got)
	}
	s, err := n.Sweep()
	if err != nil || s.Directions != 5 || s.Refilled != 2 {
		t.Errorf("Sweep() = %+v, %v; want 5 directions removed, 2 counts corrected", s, err)
	}
	fill = mapFillByName(t, n)
	for _, name := range []string{"sock_proxy_map", "sock_helper_map"} {
		if got := fill[name].Entries; got != 0 {
			t.Errorf("%s: %d entries after the recount, want 0", name, got)
		}
	}
}

// Sockets in a socket hash are counted, and leave the count when they
// close.
func TestMapFillSockets(t *testing.T) {
	n := testNode(t, Options{MapSize: 64})
	client, server := loopbackPair(t)
	// sock_rx_map has no program attached: these sockets only sit there.
	for i, c := range []net.Conn{client, server} {
		putInRxMap(t, n, i, c)
	}
	if got := mapFillByName(t, n)["sock_rx_map"].Entries; got != 2 {
		t.Errorf("sock_rx_map: %d entries, want the 2 sockets", got)
	}
	client.Close()
	server.Close()
	for deadline := time.Now().Add(5 * time.Second); mapFillByName(t, n)["sock_rx_map"].Entries != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sock_rx_map: %d entries 5 s after the sockets closed, want 0", mapFillByName(t, n)["sock_rx_map"].Entries)
		}
	}
}

func mapFillByName(t *testing.T, n *Node) map[string]MapFill {
	t.Helper()
	fill, err := n.MapFill()
	if err != nil {
		t.Fatalf("MapFill: %v", err)
	}
	out := map[string]MapFill{}
	for _, f := range fill {
		out[f.Name] = f
	}
	return out
}

// The sockets of another state (an older layout's, during an upgrade)
// are counted by the kernel's count of each socket hash, read by this
// binary's mesh_sockets loaded against that state's maps: no walk.
func TestCountSocketsOfState(t *testing.T) {
	n := testNode(t, Options{MapSize: 64})
	client, server := loopbackPair(t)
	for i, c := range []net.Conn{client, server, client} {
		putInRxMap(t, n, i, c)
	}
	if got, err := socketsOf(n.maps.SockRxMap); err != nil || got != 3 {
		t.Errorf("socketsOf(sock_rx_map) = %d, %v; want 3 (one socket twice)", got, err)
	}
	if got, err := countSockets(n.Dir()); err != nil || got != 3 {
		t.Errorf("countSockets = %d, %v; want 3", got, err)
	}
}

// loopbackPair is a TCP connection over loopback, both ends, closed at the
// test's end (closing them earlier is harmless).
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if client, err = net.Dial("tcp4", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// putInRxMap puts socket c in n's sock_rx_map under a key made of i (no
// program runs on it there: it only sits in the map).
func putInRxMap(t *testing.T, n *Node, i int, c net.Conn) {
	t.Helper()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var uerr error
	err = raw.Control(func(fd uintptr) {
		uerr = n.maps.SockRxMap.Update(meshSockKey{LocalPort: uint32(i + 1)}, uint64(fd), ebpf.UpdateNoExist)
	})
	if err != nil || uerr != nil {
		t.Fatalf("put socket %d in sock_rx_map: %v %v", i, err, uerr)
	}
}
