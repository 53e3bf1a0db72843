package ctl

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/mesh-accel/mesh-accel/bpf"
)

// Synthesised packets. A redirected message never was a packet: the pcap
// file shows each one as the TCP segment(s) it would have been on the
// loopback-like path between the two sockets, Ethernet-framed with zero
// MAC addresses (as Linux's lo is).
const (
	// pcapISN is the sequence number of the first byte every direction
	// sends in the file (no handshake is synthesised).
	pcapISN = 1
	// pcapSegment is the most payload one synthesised segment carries, so
	// that an IPv4 total length fits 16 bits. Longer messages become
	// several segments.
	pcapSegment = 65535 - 20 - 20
	// pcapSnapLen is the file's snap length: headers plus bpf.MaxSnapLen
	// bytes always fit.
	pcapSnapLen = 65535
	// pcapWindow is the advertised window of every segment.
	pcapWindow = 65535
)

// flowKey is one direction of a conversation.
type flowKey struct{ from, to netip.AddrPort }

// packetizer turns capture events into the frames of the TCP conversations
// they belong to. Each direction's sequence numbers start at pcapISN and
// advance by the message length (captured or not), and every segment
// acknowledges all the other direction sent before it, so that tcpdump and
// Wireshark follow the conversation.
type packetizer struct {
	next map[flowKey]uint32 // next sequence number per direction
}

// packet is one synthesised frame and its pcap record header.
type packet struct {
	Info gopacket.CaptureInfo
	Data []byte
}

func (p *packetizer) seq(k flowKey) uint32 {
	if s, ok := p.next[k]; ok {
		return s
	}
	return pcapISN
}

// packets returns the frames of one message. A message longer than the
// snap length yields frames whose captured length is less than their
// length; their TCP checksum covers the captured bytes only.
func (p *packetizer) packets(ev bpf.CaptureEvent) ([]packet, error) {
	if p.next == nil {
		p.next = map[flowKey]uint32{}
	}
	src, dst := endpoints(ev.From, ev.To)
	k := flowKey{ev.From, ev.To}
	seq, ack := p.seq(k), p.seq(flowKey{ev.To, ev.From})
	var out []packet
	for off := 0; off == 0 || off < int(ev.Len); off += pcapSegment {
		n := min(pcapSegment, int(ev.Len)-off)
		data := ev.Data[min(off, len(ev.Data)):min(off+n, len(ev.Data))]
		b, wire, err := frame(src, dst, seq, ack, n, data)
		if err != nil {
			return nil, err
		}
		out = append(out, packet{
			Info: gopacket.CaptureInfo{Timestamp: ev.Time, CaptureLength: len(b), Length: wire},
			Data: b,
		})
		seq += uint32(n)
	}
	p.next[k] = seq
	return out, nil
}

// endpoints returns both ends in one address family: IPv4 when both are
// IPv4 (or IPv4-mapped), else IPv6 (IPv4 as ::ffff:a.b.c.d).
func endpoints(from, to netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
	a, b := from.Addr().Unmap().WithZone(""), to.Addr().Unmap().WithZone("")
	if a.Is4() != b.Is4() {
		a, b = netip.AddrFrom16(a.As16()), netip.AddrFrom16(b.As16())
	}
	return netip.AddrPortFrom(a, from.Port()), netip.AddrPortFrom(b, to.Port())
}

// frame builds an Ethernet/IP/TCP frame carrying segLen payload bytes of
// which data is the captured part. It returns the frame (headers and data)
// and the length the whole frame would have.
func frame(src, dst netip.AddrPort, seq, ack uint32, segLen int, data []byte) ([]byte, int, error) {
	// The Ethernet header is written by hand: gopacket's pads short
	// frames to 60 bytes, which would add bytes to the TCP payload.
	eth := make([]byte, 14) // zero MAC addresses, then the EtherType
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()),
		Seq: seq, Ack: ack, ACK: true, PSH: segLen > 0, Window: pcapWindow, DataOffset: 5}
	var ip gopacket.SerializableLayer
	hdr := 14 + 20
	if src.Addr().Is4() {
		binary.BigEndian.PutUint16(eth[12:], uint16(layers.EthernetTypeIPv4))
		v4 := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
			Protocol: layers.IPProtocolTCP, Length: uint16(20 + 20 + segLen),
			SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		if err := tcp.SetNetworkLayerForChecksum(v4); err != nil {
			return nil, 0, err
		}
		ip, hdr = v4, hdr+20
	} else {
		binary.BigEndian.PutUint16(eth[12:], uint16(layers.EthernetTypeIPv6))
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			Length: uint16(20 + segLen), SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
		if err := tcp.SetNetworkLayerForChecksum(v6); err != nil {
			return nil, 0, err
		}
		ip, hdr = v6, hdr+40
	}
	buf := gopacket.NewSerializeBuffer()
	// Lengths are set above: they must describe the whole segment even
	// when only part of its payload was captured.
	opts := gopacket.SerializeOptions{FixLengths: false, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, tcp, gopacket.Payload(data)); err != nil {
		return nil, 0, fmt.Errorf("synthesise packet %s > %s: %w", src, dst, err)
	}
	return append(eth, buf.Bytes()...), hdr + segLen, nil
}

// pcapWriter writes capture events to a pcap file as synthesised packets.
type pcapWriter struct {
	w *pcapgo.Writer
	p packetizer
}

// newPcapWriter writes the file header (nanosecond timestamps, Ethernet).
func newPcapWriter(w io.Writer) (*pcapWriter, error) {
	pw := pcapgo.NewWriterNanos(w)
	if err := pw.WriteFileHeader(pcapSnapLen, layers.LinkTypeEthernet); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	return &pcapWriter{w: pw}, nil
}

func (w *pcapWriter) write(ev bpf.CaptureEvent) error {
	pkts, err := w.p.packets(ev)
	if err != nil {
		return err
	}
	for _, p := range pkts {
		if err := w.w.WritePacket(p.Info, p.Data); err != nil {
			return fmt.Errorf("write pcap packet: %w", err)
		}
	}
	return nil
}
