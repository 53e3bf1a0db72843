package bpf_test

import (
	"os"
	"testing"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/bpf/bpftest"
)

func TestOpenNodeTwiceReusesState(t *testing.T) {
	n := bpftest.NewNode(t, bpf.Options{MapSize: 1024})
	other, err := bpf.OpenNode(bpf.Options{Root: rootOf(t, n)})
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
