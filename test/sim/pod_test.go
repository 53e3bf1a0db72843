package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/mesh-accel/mesh-accel/internal/cgroupv2"
)

// podGone fails unless nothing of a pod that failed to be added remains.
func podGone(t *testing.T, n *Node, name string, veth string) {
	t.Helper()
	for _, p := range []string{netnsPath(n.Name, name), n.CgroupDir + "/" + name} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", p, err)
		}
	}
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Errorf("link %s left behind", veth)
	}
	if n.Pod(name) != nil {
		t.Errorf("failed pod %s still listed", name)
	}
}

// TestAddPodFailures: bad options are refused; a pod whose app cannot start
// or that cannot reach the other pods is removed again, with an error that
// says why; the node stays usable.
func TestAddPodFailures(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	x := n.AddTestPod(t, PodOptions{Name: "x", NoApp: true})
	for _, o := range []PodOptions{{Name: "x"}, {Name: "Bad_Name"}, {Name: ""}} {
		if _, err := n.AddPod(o); err == nil {
			t.Errorf("AddPod(%+v) succeeded", o)
		}
	}

	// BeforeStart sees the pod ready but without processes; its error fails
	// AddPod.
	calls := 0
	_, err := n.AddPod(PodOptions{Name: "hook", Sidecar: true, BeforeStart: func(p *Pod) error {
		calls++
		id, err := cgroupv2.ID(p.CgroupDir)
		if _, serr := os.Stat(p.Netns); serr != nil || err != nil || id != p.CgroupID || len(cgroupPids(p.CgroupDir)) != 0 {
			return fmt.Errorf("pod not ready or not empty: %v %v %d/%d %v", serr, err, id, p.CgroupID, cgroupPids(p.CgroupDir))
		}
		return errors.New("hook says no")
	}})
	if err == nil || !strings.Contains(err.Error(), "hook says no") || calls != 1 {
		t.Fatalf("AddPod with a failing BeforeStart = %v (%d calls)", err, calls)
	}
	podGone(t, n, "hook", n.Name+"v3")

	// The app cannot listen on the sidecar's port.
	_, err = n.AddPod(PodOptions{Name: "clash", Sidecar: true, AppPort: OutboundPort})
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("AddPod with the app on 15001 = %v, want the app's listen error", err)
	}
	podGone(t, n, "clash", n.Name+"v4")

	// x rejects the probe as a filtering host would.
	reject := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n" +
		"-A INPUT -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n"
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := inNetns(n.nsenter, x.Netns, reject, cmd, "-w"); err != nil {
			t.Fatal(err)
		}
	}
	_, err = n.AddPod(PodOptions{Name: "y"})
	if err == nil || !strings.Contains(err.Error(), "cannot reach pod x") || !strings.Contains(err.Error(), "FORWARD") {
		t.Fatalf("AddPod behind a filter = %v, want a connectivity error with a host firewall hint", err)
	}
	t.Logf("connectivity error: %v", err)
	podGone(t, n, "y", n.Name+"v5")

	accept := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := inNetns(n.nsenter, x.Netns, accept, cmd, "-w"); err != nil {
			t.Fatal(err)
		}
	}
	y := n.AddTestPod(t, PodOptions{Name: "y"})
	requireOK(t, y.RunTestClient(t, ClientSpec{Mode: ModeEcho, Target: y.AppTarget(true), Bytes: 1000}))
}
