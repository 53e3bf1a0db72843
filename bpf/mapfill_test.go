package bpf

import (
	"slices"
	"testing"

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
	root := upgradeRoot(t)
	n, err := OpenNode(Options{Root: root, MapSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Remove() })
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

	for i := range 5 {
		k := meshSockKey{LocalPort: uint32(1000 + i), Netns: 1}
		if err := n.maps.SockProxyMap.Update(k, meshProxyVal{}, ebpf.UpdateNoExist); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.maps.PodUsage.Update(uint64(7), int64(0), ebpf.UpdateNoExist); err != nil {
		t.Fatal(err)
	}
	if err := n.maps.SockProxyMap.Delete(meshSockKey{LocalPort: 1000, Netns: 1}); err != nil {
		t.Fatal(err)
	}
	fill = mapFillByName(t, n)
	for name, want := range map[string]int{"sock_proxy_map": 4, "pod_usage": 1, "sock_helper_map": 0} {
		if got := fill[name].Entries; got != want {
			t.Errorf("%s: %d entries, want %d", name, got, want)
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
