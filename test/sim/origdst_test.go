package sim

import (
	"net"
	"net/netip"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

// TestOriginalDstV4Mapped verifies on this kernel which getsockopt gives the
// pre-REDIRECT destination of a connection accepted on a dual-stack [::]
// listener: for an IPv4 client (an IPv4-mapped socket) SOL_IP/SO_ORIGINAL_DST
// answers and SOL_IPV6/IP6T_SO_ORIGINAL_DST does not; for an IPv6 client the
// reverse. originalDst (the sidecar's) must get both right.
func TestOriginalDstV4Mapped(t *testing.T) {
	n := NewTestNode(t, NodeOptions{})
	p := n.AddTestPod(t, PodOptions{Name: "o", NoApp: true})
	rules := "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		"-A OUTPUT -p tcp -m tcp --dport 9999 -j REDIRECT --to-ports 15999\nCOMMIT\n"
	for _, cmd := range []string{"iptables-restore", "ip6tables-restore"} {
		if _, err := inNetns(n.nsenter, p.Netns, rules, cmd, "-w"); err != nil {
			t.Fatal(err)
		}
	}
	var ln net.Listener
	err := ns.WithNetNSPath(p.Netns, func(ns.NetNS) error {
		var err error
		ln, err = listenDual(15999)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, dst := range []netip.Addr{p.IPv4, p.IPv6} {
		want := netip.AddrPortFrom(dst, 9999)
		c := acceptRedirected(t, p, ln, want)
		rc, _ := c.SyscallConn()
		var v4, v6 netip.AddrPort
		var err4, err6 error
		_ = rc.Control(func(fd uintptr) {
			v4, err4 = origDstV4(int(fd))
			v6, err6 = origDstV6(int(fd))
		})
		local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
		t.Logf("client %s, accepted local %s: SOL_IP -> %v %v; SOL_IPV6 -> %v %v", dst, local, v4, err4, v6, err6)
		if dst.Is4() && (!local.Is4In6() || err4 != nil || v4 != want || err6 == nil) {
			t.Errorf("v4-mapped: want SOL_IP to answer %s and SOL_IPV6 to fail", want)
		}
		if dst.Is6() && (err6 != nil || v6 != want || err4 == nil) {
			t.Errorf("IPv6: want SOL_IPV6 to answer %s and SOL_IP to fail", want)
		}
		if got, err := originalDst(c); err != nil || got != want {
			t.Errorf("originalDst = %v, %v; want %s", got, err, want)
		}
		c.Close()
	}
}

// acceptRedirected connects, inside the pod, to dst:9999 (redirected to the
// listener on 15999) and returns the accepted connection.
func acceptRedirected(t *testing.T, p *Pod, ln net.Listener, dst netip.AddrPort) *net.TCPConn {
	t.Helper()
	var client net.Conn
	err := ns.WithNetNSPath(p.Netns, func(ns.NetNS) error {
		var err error
		client, err = net.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c.(*net.TCPConn)
}
