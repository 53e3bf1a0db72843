package bpf_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
)

func TestOpenNodeTwiceReusesState(t *testing.T) {
	n := bpftest.NewNode(t, bpf.Options{MapSize: 1024})
	other, err := bpf.OpenNode(bpf.Options{Root: rootOf(t, n), MapSize: 1024})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer other.Close()
	if err := other.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if on, err := n.Enabled(); err != nil || on {
		t.Fatalf("Enabled through first handle = %v, %v; want false (shared map)", on, err)
	}
	c, err := n.Counters()
	if err != nil || len(c) != len(bpf.CounterNames()) {
		t.Fatalf("Counters() = %v, %v", c, err)
	}
	if _, err := os.Stat(n.Dir()); err != nil {
		t.Fatal(err)
	}
}

func rootOf(t *testing.T, n *bpf.Node) string {
	t.Helper()
	// Dir is <bpffs>/<root>/<version>.
	d := n.Dir()
	for i := 0; i < 2; i++ {
		j := len(d) - 1
		for j >= 0 && d[j] != '/' {
			j--
		}
		if i == 0 {
			d = d[:j]
		} else {
			return d[j+1:]
		}
	}
	return ""
}

// The maps whose elements sk_msg writes through a pointer while a close or
// Drain may delete them are not preallocated: a deleted element is freed
// only after the programs holding it finish, never reused under them.
func TestPairMapsNotPreallocated(t *testing.T) {
	n := bpftest.NewNode(t, bpf.Options{MapSize: 1024})
	for _, name := range []string{"sock_proxy_map", "sock_helper_map", "pod_usage", "sock_param_map"} {
		m, err := ebpf.LoadPinnedMap(filepath.Join(n.Dir(), "maps", name), nil)
		if err != nil {
			t.Fatal(err)
		}
		if m.Flags()&unix.BPF_F_NO_PREALLOC == 0 {
			t.Errorf("%s: flags %#x, want BPF_F_NO_PREALLOC", name, m.Flags())
		}
		m.Close()
	}
}

// The flow-control bound is read and set on live state, and the switch
// keeps it.
func TestBacklogLimit(t *testing.T) {
	n := bpftest.NewNode(t, bpf.Options{BacklogLimit: 1 << 20})
	if got, err := n.BacklogLimit(); err != nil || got != 1<<20 {
		t.Fatalf("BacklogLimit = %d, %v; want the 1 MiB it was created with", got, err)
	}
	if err := n.SetEnabled(false); err != nil {
		t.Fatal(err)
	}
	if err := n.SetBacklogLimit(0); err != nil {
		t.Fatal(err)
	}
	got, err := n.BacklogLimit()
	on, _ := n.Enabled()
	if err != nil || got != bpf.DefaultBacklogLimit || on {
		t.Fatalf("after SetBacklogLimit(0) with the switch off: limit %d (%v), enabled %v", got, err, on)
	}
}
