package sim

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and, with the
// same value, IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h).
const soOriginalDst = 80

// originalDst returns the destination a redirected connection had before
// iptables REDIRECT, the way Envoy reads it: SOL_IP/SO_ORIGINAL_DST for IPv4
// and IPv4-mapped sockets, SOL_IPV6/IP6T_SO_ORIGINAL_DST for IPv6, each
// falling back to the other. On kernel 6.18 the SOL_IP call answers for a
// v4-mapped socket accepted on a dual-stack [::] listener, and the SOL_IPV6
// call fails with ENOENT (TestOriginalDstV4Mapped checks this).
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local := c.LocalAddr().(*net.TCPAddr).AddrPort().Addr()
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var dst netip.AddrPort
	var gerr error
	err = rc.Control(func(fd uintptr) {
		first, second := origDstV4, origDstV6
		if !local.Is4() && !local.Is4In6() {
			first, second = origDstV6, origDstV4
		}
		if dst, gerr = first(int(fd)); gerr != nil {
			var err2 error
			if dst, err2 = second(int(fd)); err2 == nil {
				gerr = nil
			}
		}
	})
	if err == nil {
		err = gerr
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	return dst, nil
}

// getsockoptRaw calls getsockopt(2) with a byte buffer.
func getsockoptRaw(fd, level, opt int, buf []byte) (int, error) {
	l := uint32(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt),
		uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(l), nil
}

// origDstV4 asks SOL_IP/SO_ORIGINAL_DST (a struct sockaddr_in).
func origDstV4(fd int) (netip.AddrPort, error) {
	var b [unix.SizeofSockaddrInet4]byte
	n, err := getsockoptRaw(fd, unix.SOL_IP, soOriginalDst, b[:])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("SOL_IP SO_ORIGINAL_DST: %w", err)
	}
	if n < 8 || binary.NativeEndian.Uint16(b[:2]) != unix.AF_INET {
		return netip.AddrPort{}, fmt.Errorf("SOL_IP SO_ORIGINAL_DST: unexpected answer %x", b[:n])
	}
	addr := netip.AddrFrom4([4]byte(b[4:8]))
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), nil
}

// origDstV6 asks SOL_IPV6/IP6T_SO_ORIGINAL_DST (a struct sockaddr_in6).
func origDstV6(fd int) (netip.AddrPort, error) {
	var b [unix.SizeofSockaddrInet6]byte
	n, err := getsockoptRaw(fd, unix.SOL_IPV6, soOriginalDst, b[:])
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("SOL_IPV6 IP6T_SO_ORIGINAL_DST: %w", err)
	}
	if n < 24 || binary.NativeEndian.Uint16(b[:2]) != unix.AF_INET6 {
		return netip.AddrPort{}, fmt.Errorf("SOL_IPV6 IP6T_SO_ORIGINAL_DST: unexpected answer %x", b[:n])
	}
	addr := netip.AddrFrom16([16]byte(b[8:24]))
	return netip.AddrPortFrom(addr, binary.BigEndian.Uint16(b[2:4])), nil
}
