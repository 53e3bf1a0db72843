package rules

import "net/netip"

// Endpoint is one end of a connection as the BPF program sees it: address
// and port, and the owner uid and gid of the socket.
type Endpoint struct {
	Addr     netip.Addr
	Port     uint16
	UID, GID uint32
}

// Match reports whether r matches the connection between a and b: each
// option of r is satisfied by at least one of the two ends, not necessarily
// the same end for every option. A rule without options matches every
// connection.
//
// Addresses and prefixes are compared in unmapped form, so IPv4 prefixes
// match IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) and IPv4-mapped
// prefixes (::ffff:10.0.0.0/104) match IPv4 addresses. IPv6 zones are
// ignored.
func (r Rule) Match(a, b Endpoint) bool {
	if r.HasIP {
		p := unmapPrefix(r.Prefix)
		if !p.Contains(unmapAddr(a.Addr)) && !p.Contains(unmapAddr(b.Addr)) {
			return false
		}
	}
	if r.HasPort && !r.portMatch(a.Port) && !r.portMatch(b.Port) {
		return false
	}
	if r.HasUID && a.UID != r.UID && b.UID != r.UID {
		return false
	}
	if r.HasGID && a.GID != r.GID && b.GID != r.GID {
		return false
	}
	return true
}

// portMatch reports whether port lies in the port range of r.
func (r Rule) portMatch(port uint16) bool {
	return r.PortLo <= port && port <= r.PortHi
}

// Accelerate reports whether the connection between a and b is to be
// accelerated: an empty or nil set accelerates every connection; otherwise
// a connection is accelerated when some ACCEPT rule matches it and no
// RETURN rule does (RETURN wins, whatever the order of the rules).
func (s *Set) Accelerate(a, b Endpoint) bool {
	if s == nil || len(s.Rules) == 0 {
		return true
	}
	accept := false
	for _, r := range s.Rules {
		if !r.Match(a, b) {
			continue
		}
		switch r.Target {
		case Return:
			return false
		case Accept:
			accept = true
		}
	}
	return accept
}

// unmapAddr returns a without IPv4 mapping and zone.
func unmapAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// unmapPrefix returns the IPv4 prefix that an IPv4-mapped IPv6 prefix of
// /96 or longer covers, and any other prefix unchanged.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p
}
