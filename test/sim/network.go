package sim

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// pickSubnets chooses a random 10.R1.R2.0/24 that no address or route of the
// host overlaps, and a random ULA /64 (fdXX:XXXX:XXXX:XXXX::/64).
func pickSubnets() (netip.Prefix, netip.Prefix, error) {
	var b [9]byte
	for range 100 {
		if _, err := rand.Read(b[:]); err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("pick subnets: %w", err)
		}
		v4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, b[0], b[1], 0}), 24)
		used, err := hostUses(v4)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, err
		}
		if used {
			continue
		}
		var a6 [16]byte
		a6[0] = 0xfd
		copy(a6[1:8], b[2:9])
		return v4, netip.PrefixFrom(netip.AddrFrom16(a6), 64), nil
	}
	return netip.Prefix{}, netip.Prefix{}, errors.New("pick subnets: no free 10.x.y.0/24")
}

// FreeIPv4Subnet returns a random 10.R1.R2.0/24 that no address or route of
// the host overlaps, e.g. for a CNI bridge a test creates beside a node's.
func FreeIPv4Subnet() (netip.Prefix, error) {
	v4, _, err := pickSubnets()
	return v4, err
}

// hostUses reports whether an IPv4 address or route of the host overlaps p.
func hostUses(p netip.Prefix) (bool, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, fmt.Errorf("list host addresses: %w", err)
	}
	for _, a := range addrs {
		if q, ok := prefixOf(a.IPNet); ok && q.Overlaps(p) {
			return true, nil
		}
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false, fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if q, ok := prefixOf(r.Dst); ok && q.Bits() > 0 && q.Overlaps(p) {
			return true, nil
		}
	}
	return false, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

// hostAddr returns address number n of prefix p (p's base + n).
func hostAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().As16()
	b[15] += byte(n)
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		return a.Unmap()
	}
	return a
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// addrNoDAD is an address that is usable at once (no duplicate detection).
func addrNoDAD(a netip.Addr, bits int) *netlink.Addr {
	return &netlink.Addr{IPNet: ipNet(a, bits), Flags: unix.IFA_F_NODAD}
}

// createBridge creates the node's bridge with address .1 of both subnets.
func createBridge(name string, v4, v6 netip.Prefix) error {
	off := false
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}, MulticastSnooping: &off}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	for _, a := range []*netlink.Addr{addrNoDAD(hostAddr(v4, 1), 24), addrNoDAD(hostAddr(v6, 1), 64)} {
		if err := netlink.AddrAdd(br, a); err != nil {
			return fmt.Errorf("address %s on bridge %s: %w", a.IPNet, name, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge %s: %w", name, err)
	}
	return nil
}

// podNet is what a pod's network setup needs.
type podNet struct {
	netns    string // path
	veth     string // host side
	bridge   string
	ip4, ip6 netip.Addr
	gw4, gw6 netip.Addr
}

// setupPodNet creates the veth pair (eth0 inside the pod, enslaved to the
// bridge outside) and configures lo, eth0, ::6 on lo and the default routes.
func setupPodNet(p podNet) error {
	h, err := netns.GetFromPath(p.netns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", p.netns, err)
	}
	defer h.Close()
	br, err := netlink.LinkByName(p.bridge)
	if err != nil {
		return fmt.Errorf("find bridge: %w", err)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: p.veth, MasterIndex: br.Attrs().Index},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(h),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", p.veth, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring up %s: %w", p.veth, err)
	}
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", p.netns, err)
	}
	defer nh.Close()
	if err := configurePod(nh, p); err != nil {
		return err
	}
	return waitForwarding(p.veth, 3*time.Second)
}

// waitForwarding waits until the bridge forwards frames of the port veth
// (brport state 3). The port turns forwarding a few milliseconds after the
// pod's end comes up; frames sent before are dropped, which would cost the
// first connection a 1 s retransmission.
func waitForwarding(veth string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var state []byte
	for {
		b, err := os.ReadFile("/sys/class/net/" + veth + "/brport/state")
		if err != nil {
			return fmt.Errorf("bridge port %s: %w", veth, err)
		}
		state = bytes.TrimSpace(b)
		if string(state) == "3" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bridge port %s not forwarding after %v (state %s)", veth, timeout, state)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func configurePod(nh *netlink.Handle, p podNet) error {
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := nh.AddrAdd(lo, addrNoDAD(InboundSourceV6, 128)); err != nil {
		return fmt.Errorf("add ::6 on lo: %w", err)
	}
	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	for _, a := range []*netlink.Addr{addrNoDAD(p.ip4, 24), addrNoDAD(p.ip6, 64)} {
		if err := nh.AddrAdd(eth, a); err != nil {
			return fmt.Errorf("address %s on eth0: %w", a.IPNet, err)
		}
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up eth0: %w", err)
	}
	for _, gw := range []netip.Addr{p.gw4, p.gw6} {
		r := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw.AsSlice()}
		if err := nh.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// setupLoopback brings lo up and adds ::6 on it (unless present) in the
// network namespace at path, for pods whose network was made by someone else.
func setupLoopback(path string) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := nh.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := nh.AddrAdd(lo, addrNoDAD(InboundSourceV6, 128)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add ::6 on lo: %w", err)
	}
	return nil
}

// podPortRange is the pod's ephemeral port range. Through both sidecars one
// client connection holds three local ports of the client pod's address
// space towards the same destination (app, sidecar and their TIME_WAITs), so
// the kernel's default 28k ports run out at ~14k connections a minute; the
// churn tests open 20k. Kubernetes lists ip_local_port_range as a safe sysctl
// that pods may set.
const podPortRange = "1024 65535"

// istioPorts are the ports Istio keeps for its sidecar (15000 admin, 15001
// outbound, 15006 inbound, 15020/15021 agent, 15090 stats, ...). A pod that
// widens its port range over them must reserve them, as Kubernetes lets it
// (ip_local_reserved_ports is a safe sysctl too): otherwise a connection the
// kernel gives one of them as its source port keeps it (a self-connect to
// 127.0.0.1:15000 while Envoy starts ends in TIME_WAIT), and Envoy cannot
// bind it ("cannot bind '127.0.0.1:15000': Address already in use").
const istioPorts = "15000-15090"

// setPortRange sets net.ipv4.ip_local_port_range (which also applies to
// IPv6) in the network namespace at path, with Istio's ports and the pod's
// servers' ports (listen) reserved.
func setPortRange(path string, listen ...uint16) error {
	netns, err := ns.GetNS(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer netns.Close()
	reserved := istioPorts
	for _, p := range listen {
		reserved += "," + strconv.Itoa(int(p))
	}
	return netns.Do(func(ns.NetNS) error {
		for f, v := range map[string]string{
			"/proc/sys/net/ipv4/ip_local_reserved_ports": reserved,
			"/proc/sys/net/ipv4/ip_local_port_range":     podPortRange,
		} {
			if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
				return fmt.Errorf("set %s to %q in %s: %w", f, v, path, err)
			}
		}
		return nil
	})
}
