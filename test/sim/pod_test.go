package sim

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
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

// TestExternalNetwork: a pod whose network the caller makes (here a veth on
// the node's bridge with a chosen address, as a CNI chain would) runs its
// sidecar and app like any other pod; a failing Network removes the pod.
func TestExternalNetwork(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	// a has a sidecar: a plain-text client that half-closes at once is reset
	// by Envoy's inbound listener filters (TestEnvoyResetsEarlyHalfClose).
	a := n.AddTestPod(t, PodOptions{Name: "a", NoApp: true, Sidecar: true})
	veth := n.Name + "x"
	t.Cleanup(func() { _ = deleteLink(veth) }) // the caller's, like a CNI bridge
	ready := false
	b := n.AddTestPod(t, PodOptions{Name: "b", Sidecar: true, Network: func(p *Pod) (netip.Addr, netip.Addr, error) {
		_, err := os.Stat(p.Netns)
		ready = err == nil && len(cgroupPids(p.CgroupDir)) == 0 && p.IPv4 == netip.Addr{}
		ip4, ip6 := hostAddr(n.IPv4Net, 200), hostAddr(n.IPv6Net, 200)
		return ip4, ip6, setupPodNet(podNet{
			netns: p.Netns, veth: veth, bridge: n.Bridge, ip4: ip4, ip6: ip6,
			gw4: hostAddr(n.IPv4Net, 1), gw6: hostAddr(n.IPv6Net, 1),
		})
	}})
	if !ready || b.Veth != "" || b.IPv4 != hostAddr(n.IPv4Net, 200) {
		t.Fatalf("Network ran too late or its addresses were not taken: ready %v, %+v", ready, b)
	}
	for _, v6 := range []bool{false, true} {
		requireOK(t, a.RunTestClient(t, ClientSpec{Mode: ModeEcho, Target: b.AppTarget(v6), Bytes: 1000}))
	}
	if c, err := b.RedirectCounts(); err != nil || c.Inbound4 == 0 || c.Inbound6 == 0 {
		t.Errorf("traffic did not pass b's sidecar: %+v, %v", c, err)
	}

	_, err := n.AddPod(PodOptions{Name: "c", Network: func(*Pod) (netip.Addr, netip.Addr, error) {
		return netip.Addr{}, netip.Addr{}, errors.New("no network today")
	}})
	if err == nil || !strings.Contains(err.Error(), "no network today") {
		t.Fatalf("AddPod with a failing Network = %v", err)
	}
	podGone(t, n, "c", n.Name+"v4")
}

// TestPodReservesItsPorts: the pod's wide ephemeral range leaves out Istio's
// ports, the app's and the services', so no connection can take one as its source port
// before the sidecar or the app binds it (a self-connect to 127.0.0.1:15000
// during Envoy's start once kept the port in TIME_WAIT). The range is
// narrowed to the reserved ports alone: the kernel then finds no port to
// give, while it gives the first port past them.
func TestPodReservesItsPorts(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	p := n.AddTestPod(t, PodOptions{Name: "a", NoApp: true, AppPort: 9753})
	t.Cleanup(func() {
		if err := setPortRange(p.Netns, p.listenPorts()...); err != nil {
			t.Error(err)
		}
	})
	bindAny := func(lo, hi uint16) (uint16, error) {
		var port uint16
		err := ns.WithNetNSPath(p.Netns, func(ns.NetNS) error {
			f := "/proc/sys/net/ipv4/ip_local_port_range"
			if err := os.WriteFile(f, []byte(fmt.Sprintf("%d %d", lo, hi)), 0o644); err != nil {
				return fmt.Errorf("set %s: %w", f, err)
			}
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return err
			}
			port = uint16(l.Addr().(*net.TCPAddr).Port)
			return l.Close()
		})
		return port, err
	}
	for _, r := range [][2]uint16{{EnvoyAdminPort, EnvoyStatsPort}, {9753, 9753}, {6379, 6379}} {
		if port, err := bindAny(r[0], r[1]); !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("range %d-%d: the kernel gave port %d (%v), want none: the ports are not reserved", r[0], r[1], port, err)
		}
	}
	if port, err := bindAny(EnvoyStatsPort+1, EnvoyStatsPort+1); err != nil || port != EnvoyStatsPort+1 {
		t.Errorf("range %d-%d: port %d, %v; want that port", EnvoyStatsPort+1, EnvoyStatsPort+1, port, err)
	}
}
