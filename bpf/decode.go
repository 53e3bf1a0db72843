package bpf

import (
	"encoding/binary"
	"net/netip"

	"github.com/mesh-accel/mesh-accel/rules"
)

// decodePodConfig turns the BPF map value back into a PodConfig, so that
// what is shown is what is in force.
func decodePodConfig(pc *meshPodConfig) PodConfig {
	cfg := PodConfig{
		TrustApp:   pc.Flags&podTrustApp != 0,
		Disabled:   pc.Flags&podDisabled != 0,
		oneWay:     pc.Flags&podOneWay != 0,
		SidecarUID: pc.TrustedUid,
		Quota:      pc.Quota,
		Rules:      &rules.Set{},
	}
	for i := uint32(0); i < pc.Nrules && int(i) < len(pc.Rules); i++ {
		cfg.Rules.Rules = append(cfg.Rules.Rules, decodeRule(&pc.Rules[i]))
	}
	return cfg
}

func decodeRule(m *meshRule) rules.Rule {
	r := rules.Rule{Target: rules.Accept}
	if m.Flags&ruleIP != 0 {
		ip, mask := wordBytes(m.Ip), wordBytes(m.Mask)
		bits := 0
		for _, b := range mask {
			for ; b != 0; b <<= 1 {
				bits++
			}
		}
		addr := netip.AddrFrom16(ip)
		if addr.Is4In6() && bits >= 96 {
			addr, bits = addr.Unmap(), bits-96
		}
		r.Prefix, r.HasIP = netip.PrefixFrom(addr, bits), true
	}
	if m.Flags&rulePort != 0 {
		r.PortLo, r.PortHi, r.HasPort = m.PortLo, m.PortHi, true
	}
	if m.Flags&ruleUID != 0 {
		r.UID, r.HasUID = m.Uid, true
	}
	if m.Flags&ruleGID != 0 {
		r.GID, r.HasGID = m.Gid, true
	}
	if m.Flags&ruleReturn != 0 {
		r.Target = rules.Return
	}
	return r
}

// keyAddr decodes an address of a BPF key (IPv6 or IPv4-mapped, network
// order words) into its plain form.
func keyAddr(w [4]uint32) netip.Addr {
	return netip.AddrFrom16(wordBytes(w)).Unmap()
}

// addrWords is an address as the BPF keys, rules and filters hold it:
// IPv6, IPv4 as ::ffff:a.b.c.d, in four words of network-order bytes.
func addrWords(a netip.Addr) [4]uint32 { return byteWords(a.As16()) }

// byteWords and wordBytes convert between 16 bytes and the four words of
// the C structs' __u32 ip[4] (and mask[4]), byte for byte.
func byteWords(b [16]byte) [4]uint32 {
	var w [4]uint32
	for i := range w {
		w[i] = binary.NativeEndian.Uint32(b[i*4:])
	}
	return w
}

func wordBytes(w [4]uint32) [16]byte {
	var b [16]byte
	for i := range w {
		binary.NativeEndian.PutUint32(b[i*4:], w[i])
	}
	return b
}
