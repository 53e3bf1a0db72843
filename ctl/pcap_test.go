package ctl

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/mesh-accel/mesh-accel/bpf"
	"github.com/mesh-accel/mesh-accel/ctl/pcaptest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 6007, time.UTC) // nanoseconds: the file keeps them

func event(from, to netip.AddrPort, data string, n uint32) bpf.CaptureEvent {
	if n == 0 {
		n = uint32(len(data))
	}
	return bpf.CaptureEvent{Time: t0, From: from, To: to, Len: n, Data: []byte(data)}
}

// onesSum is the Internet checksum's sum of b as 16-bit words.
func onesSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// checkChecksums verifies the IPv4 header and the TCP checksums of a whole
// (not truncated) frame.
func checkChecksums(t *testing.T, frame []byte) {
	t.Helper()
	var pseudo []byte
	var tcp []byte
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		ip := frame[14:34]
		if fold(onesSum(ip)) != 0xffff {
			t.Errorf("bad IPv4 header checksum")
		}
		tcp = frame[34:]
		pseudo = append(append([]byte{}, ip[12:20]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
	case 0x86dd:
		ip := frame[14:54]
		tcp = frame[54:]
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(len(tcp)>>8), byte(len(tcp)), 0, 0, 0, 6)
	default:
		t.Fatalf("not IP: %x", frame[:14])
	}
	if fold(onesSum(pseudo)+onesSum(tcp)) != 0xffff {
		t.Errorf("bad TCP checksum")
	}
}

func TestPacketizerSequence(t *testing.T) {
	var p packetizer
	type want struct {
		seq, ack uint32
		payload  string
		length   int // on the wire
	}
	for i, tc := range []struct {
		ev   bpf.CaptureEvent
		want want
	}{
		{event(addrA, sideA, "hello", 0), want{1, 1, "hello", 14 + 20 + 20 + 5}},
		{event(sideA, addrA, "hi", 0), want{1, 6, "hi", 56}},
		{event(addrA, sideA, "abc", 0), want{6, 3, "abc", 57}},
		{event(addrA, sideA, "trunc", 1000), want{9, 3, "trunc", 1054}}, // only 5 of 1000 bytes captured
		{event(sideA, addrA, "x", 0), want{3, 1009, "x", 55}},
		{event(appB, inbound, "other", 0), want{1, 1, "other", 59}}, // another conversation
	} {
		pkts, err := p.packets(tc.ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(pkts) != 1 {
			t.Fatalf("event %d: %d packets", i, len(pkts))
		}
		pk := gopacket.NewPacket(pkts[0].Data, layers.LayerTypeEthernet, gopacket.Default)
		tcp, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if tcp == nil {
			t.Fatalf("event %d: no TCP layer: %v", i, pk)
		}
		got := want{tcp.Seq, tcp.Ack, string(tcp.Payload), pkts[0].Info.Length}
		if got != tc.want {
			t.Errorf("event %d: %+v, want %+v", i, got, tc.want)
		}
		if !tcp.ACK || !tcp.PSH || tcp.SYN || tcp.FIN || tcp.RST {
			t.Errorf("event %d: flags %v", i, tcp)
		}
		if tcp.SrcPort != layers.TCPPort(tc.ev.From.Port()) || tcp.DstPort != layers.TCPPort(tc.ev.To.Port()) {
			t.Errorf("event %d: ports %d > %d", i, tcp.SrcPort, tcp.DstPort)
		}
		ip, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || !ip.SrcIP.Equal(tc.ev.From.Addr().AsSlice()) || int(ip.Length) != tc.want.length-14 {
			t.Errorf("event %d: IPv4 %+v", i, ip)
		}
		if pkts[0].Info.CaptureLength != len(pkts[0].Data) || !pkts[0].Info.Timestamp.Equal(t0) {
			t.Errorf("event %d: capture info %+v", i, pkts[0].Info)
		}
		if tc.ev.Len == uint32(len(tc.ev.Data)) {
			checkChecksums(t, pkts[0].Data)
		}
	}
}

// Messages longer than a segment become several; IPv6 and mixed families
// give IPv6 packets.
func TestPacketizerLongAndIPv6(t *testing.T) {
	var p packetizer
	v6a := netip.MustParseAddrPort("[fd00::2]:40000")
	v6b := netip.MustParseAddrPort("[::1]:15001")
	pkts, err := p.packets(event(v6a, v6b, strings.Repeat("z", 1024), 100000))
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != 2 {
		t.Fatalf("%d packets for 100000 bytes, want 2", len(pkts))
	}
	var seq uint32 = pcapISN
	for i, pk := range pkts {
		d := gopacket.NewPacket(pk.Data, layers.LayerTypeEthernet, gopacket.Default)
		ip6, _ := d.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		tcp, _ := d.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip6 == nil || tcp == nil {
			t.Fatalf("packet %d: %v", i, d)
		}
		if tcp.Seq != seq {
			t.Errorf("packet %d: seq %d, want %d", i, tcp.Seq, seq)
		}
		seq += uint32(ip6.Length) - 20
	}
	if seq != pcapISN+100000 || p.next[flowKey{v6a, v6b}] != seq {
		t.Errorf("sequence ends at %d (next %d), want %d", seq, p.next[flowKey{v6a, v6b}], pcapISN+100000)
	}
	mixed, err := p.packets(event(netip.MustParseAddrPort("10.0.0.2:1"), v6b, "m", 0))
	if err != nil {
		t.Fatal(err)
	}
	d := gopacket.NewPacket(mixed[0].Data, layers.LayerTypeEthernet, gopacket.Default)
	if ip6, _ := d.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ip6 == nil || len(ip6.SrcIP) != 16 || !ip6.SrcIP.Equal(addrA.Addr().AsSlice()) {
		t.Errorf("mixed families: %v", d)
	}
	checkChecksums(t, mixed[0].Data)
}

// A written file reads back, and tcpdump shows the conversation.
func TestPcapFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcap")
	var buf bytes.Buffer
	w, err := newPcapWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	evs := []bpf.CaptureEvent{event(addrA, sideA, "GET / HTTP/1.1\r\n\r\n", 0), event(sideA, addrA, "HTTP/1.1 200 OK", 0),
		event(addrA, sideA, "more", 3000)}
	for _, ev := range evs {
		if err := w.write(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("link type %v", r.LinkType())
	}
	n := 0
	for {
		_, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		if !ci.Timestamp.Equal(t0) {
			t.Errorf("timestamp %v, want %v", ci.Timestamp, t0)
		}
		n++
	}
	if n != len(evs) {
		t.Errorf("%d packets read back, want %d", n, len(evs))
	}
	out := pcaptest.Tcpdump(t, "-nn", "-S", "-r", path)
	for _, want := range []string{
		"IP 10.0.0.2.40000 > 127.0.0.1.15001: Flags [P.], seq 1:19, ack 1, win 65535, length 18",
		"IP 127.0.0.1.15001 > 10.0.0.2.40000: Flags [P.], seq 1:16, ack 19, win 65535, length 15",
		"IP 10.0.0.2.40000 > 127.0.0.1.15001: Flags [P.], seq 19:3019, ack 16, win 65535, length 3000",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tcpdump output lacks %q:\n%s", want, out)
		}
	}
	// tcpdump verifies the checksums of the two whole packets.
	if v := pcaptest.Tcpdump(t, "-nn", "-vv", "-r", path); strings.Count(v, "(correct)") != 2 || strings.Contains(v, "incorrect") {
		t.Errorf("tcpdump -vv does not find 2 correct checksums:\n%s", v)
	}
}
