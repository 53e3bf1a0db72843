package sim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesh-accel/mesh-accel/internal/nodestate"
)

// Istio's sidecar ports and identities.
const (
	// SidecarUID and SidecarGID are the credentials of Istio's proxy; its
	// iptables rules let this owner's traffic out un-redirected. The uid
	// is the one mesh-accel trusts by default.
	SidecarUID = nodestate.DefaultSidecarUID
	SidecarGID = 1337
	// OutboundPort receives the pod's redirected outgoing connections.
	OutboundPort = 15001
	// InboundPort receives the pod's redirected incoming connections.
	InboundPort = 15006
)

// InboundSourceV4 and InboundSourceV6 are the sources of the sidecar's
// connections to the local app (Istio binds 127.0.0.6 and ::6).
var (
	InboundSourceV4 = netip.MustParseAddr("127.0.0.6")
	InboundSourceV6 = netip.MustParseAddr("::6")
)

// sidecarArgs are the arguments of the sidecar role.
type sidecarArgs struct {
	Outbound, Inbound uint16
	Splice            bool // relay with io.Copy (splice) instead of read/write
}

// runSidecar proxies redirected connections like Envoy until killed.
func runSidecar(a sidecarArgs) error {
	out, err := listenDual(a.Outbound)
	if err != nil {
		return err
	}
	in, err := listenDual(a.Inbound)
	if err != nil {
		return err
	}
	printReady(fmt.Sprintf("%s %s", out.Addr(), in.Addr()))
	errc := make(chan error, 2)
	go func() { errc <- acceptLoop(out, a, false) }()
	go func() { errc <- acceptLoop(in, a, true) }()
	return <-errc
}

func acceptLoop(ln net.Listener, a sidecarArgs, inbound bool) error {
	for {
		c, err := accept(ln)
		if err != nil {
			return err
		}
		go proxy(c, a, inbound)
	}
}

// accept waits for the next connection; it rides out transient failures
// (out of file descriptors, a connection aborted before accept) like a
// real proxy, and fails only when the listener is closed.
func accept(ln net.Listener) (*net.TCPConn, error) {
	for {
		c, err := ln.Accept()
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, fmt.Errorf("accept: %w", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// proxy connects to the original destination of c and relays; any failure
// resets c, as Envoy does.
func proxy(c *net.TCPConn, a sidecarArgs, inbound bool) {
	dst, err := originalDst(c)
	if err != nil || dst.Port() == a.Outbound || dst.Port() == a.Inbound {
		resetConn(c) // not redirected, or a loop
		return
	}
	up, err := dialUpstream(dst, inbound)
	if err != nil {
		resetConn(c)
		return
	}
	relay(c, up, a.Splice)
}

// dialUpstream connects to dst; inbound connections come from 127.0.0.6 or ::6
// (bound without a port, so the port is chosen per destination at connect).
func dialUpstream(dst netip.AddrPort, inbound bool) (*net.TCPConn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	network := "tcp6"
	if dst.Addr().Is4() {
		network = "tcp4"
	}
	if inbound {
		src := InboundSourceV6
		if dst.Addr().Is4() {
			src = InboundSourceV4
		}
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial(network, dst.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// relay copies both directions. EOF on one side half-closes the other; an
// error on either side resets both.
func relay(a, b *net.TCPConn, splice bool) {
	errc := make(chan error, 2)
	go func() { errc <- pipeOne(b, a, splice) }()
	go func() { errc <- pipeOne(a, b, splice) }()
	failed := false
	for range 2 {
		if err := <-errc; err != nil && !failed {
			failed = true
			resetConn(a)
			resetConn(b)
		}
	}
	if !failed {
		_ = a.Close()
		_ = b.Close()
	}
}

// pipeOne copies src to dst until EOF, then half-closes dst.
func pipeOne(dst, src *net.TCPConn, splice bool) error {
	var err error
	if splice {
		_, err = io.Copy(dst, src) // TCPConn to TCPConn: splice(2)
	} else {
		err = copyPlain(dst, src)
	}
	if err != nil {
		return err
	}
	return dst.CloseWrite()
}

// copyPlain is Envoy's way: read into a 32 KiB buffer, write it out.
func copyPlain(dst, src *net.TCPConn) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
