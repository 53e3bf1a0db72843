package sim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// probePorts are ports Istio's inbound rules let through (RETURN), so a
// probe listener in a sidecar pod is reached directly.
var probePorts = []uint16{15021, 15020, 15090, 15008}

// probe checks that a TCP handshake from the namespace at fromNetns reaches
// dst (in the namespace at toNetns) over the bridge. The listener and the
// dialer are sockets of this process, created inside the namespaces. The
// dialing pod must not have the sidecar rules yet.
func probe(fromNetns, toNetns string, dst netip.Addr) error {
	var ln net.Listener
	err := ns.WithNetNSPath(toNetns, func(ns.NetNS) error {
		var errs []error
		for _, port := range probePorts {
			l, err := net.Listen("tcp", netip.AddrPortFrom(dst, port).String())
			if err == nil {
				ln = l
				return nil
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("probe listener on %s: %w", dst, err)
	}
	defer ln.Close()
	return ns.WithNetNSPath(fromNetns, func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// hostFirewallHint explains how the host may filter bridged traffic: with
// br_netfilter loaded and bridge-nf-call-ip(6)tables=1, frames between two
// ports of a bridge traverse the host's FORWARD chains. Nothing is changed;
// the host's settings are only read.
func hostFirewallHint(bridge string, v6 bool) string {
	sysctl, cmd := "bridge-nf-call-iptables", "iptables"
	if v6 {
		sysctl, cmd = "bridge-nf-call-ip6tables", "ip6tables"
	}
	b, err := os.ReadFile("/proc/sys/net/bridge/" + sysctl)
	if err != nil {
		return "br_netfilter is not loaded, so the host firewall does not see bridged frames; check the bridge " + bridge
	}
	if strings.TrimSpace(string(b)) != "1" {
		return fmt.Sprintf("br_netfilter is loaded but net.bridge.%s=0; check the bridge %s", sysctl, bridge)
	}
	policy := "unknown"
	if out, err := exec.Command(cmd, "-w", "-S", "FORWARD").Output(); err == nil {
		for line := range strings.Lines(string(out)) {
			if f := strings.Fields(line); len(f) == 3 && f[0] == "-P" {
				policy = f[2]
			}
		}
	}
	return fmt.Sprintf("br_netfilter is loaded with net.bridge.%s=1, so traffic between pods passes the host's "+
		"%s FORWARD chain (policy %s); if the host filters it, allow it yourself, e.g. "+
		"'%s -I FORWARD -i %s -o %s -j ACCEPT' (this package never changes the host firewall)",
		sysctl, cmd, policy, cmd, bridge, bridge)
}
