package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// superFrame builds Ethernet + IPv4/IPv6 + TCP/UDP with payload, its L4
// checksum field holding only the pseudo-header sum, as a sender that
// offloads the checksum leaves it (CHECKSUM_PARTIAL).
func superFrame(v6, udp bool, payload []byte, tcpFlags byte) ([]byte, VnetHdr) {
	b := []byte{0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00}
	l3 := len(b)
	proto := byte(protoTCP)
	if udp {
		proto = protoUDP
	}
	l4len := 20 + len(payload)
	if udp {
		l4len = 8 + len(payload)
	}
	if v6 {
		b[12], b[13] = 0x86, 0xdd
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(l4len))
		ip[6], ip[7] = proto, 64
		ip[8], ip[23] = 0xfd, 1
		ip[24], ip[39] = 0xfd, 2
		b = append(b, ip...)
	} else {
		ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len))
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip))
		b = append(b, ip...)
	}
	l4 := len(b)
	var csumOff int
	if udp {
		h := make([]byte, 8)
		binary.BigEndian.PutUint16(h[0:], 5000)
		binary.BigEndian.PutUint16(h[2:], 5001)
		binary.BigEndian.PutUint16(h[4:], uint16(l4len))
		b, csumOff = append(b, h...), 6
	} else {
		h := make([]byte, 20)
		binary.BigEndian.PutUint16(h[0:], 40000)
		binary.BigEndian.PutUint16(h[2:], 5201)
		binary.BigEndian.PutUint32(h[4:], 0xfffff000) // sequence numbers wrap inside the frame
		h[12], h[13] = 5<<4, tcpFlags
		binary.BigEndian.PutUint16(h[14:], 65535)
		b, csumOff = append(b, h...), 16
	}
	b = append(b, payload...)
	lo := layout{l3: l3, l4: l4, v6: v6, udp: udp}
	binary.BigEndian.PutUint16(b[l4+csumOff:], fold(pseudoHeader(b, lo, l4len)))
	h := VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(l4), CsumOffset: uint16(csumOff), GSOSize: 1448}
	switch {
	case udp:
		h.GSOType = GSOUDPL4
	case v6:
		h.GSOType = GSOTCPv6
	default:
		h.GSOType = GSOTCPv4
	}
	return b, h
}

// l4Valid checks a segment's TCP/UDP checksum, and the IPv4 header's.
func l4Valid(t *testing.T, seg []byte) {
	t.Helper()
	v6 := binary.BigEndian.Uint16(seg[12:]) == etherTypeIPv6
	lo := layout{l3: 14, l4: 34, v6: v6}
	proto := seg[14+9]
	if v6 {
		lo.l4, proto = 54, seg[14+6]
	} else if Checksum(seg[14:34]) != 0 {
		t.Fatalf("IPv4 header checksum wrong")
	}
	lo.udp = proto == protoUDP
	if got := ^fold(sum(pseudoHeader(seg, lo, len(seg)-lo.l4), seg[lo.l4:])); got != 0 {
		t.Fatalf("L4 checksum does not verify (residue %#x)", got)
	}
}

func payload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return p
}

func TestChecksumRFC1071(t *testing.T) {
	// RFC 1071's example: 0001 f203 f4f5 f6f7 sums to ddf2, complement 220d.
	if got := Checksum([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0x220d {
		t.Fatalf("Checksum = %#x, want 0x220d", got)
	}
	if got := Checksum([]byte{0x00, 0x01, 0xf2}); got != ^uint16(0x0001+0xf200) { // an odd last byte is the high half of a word
		t.Fatalf("odd-length Checksum = %#x", got)
	}
}

func TestCompleteChecksum(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6, udp bool
	}{{"tcp4", false, false}, {"tcp6", true, false}, {"udp4", false, true}, {"udp6", true, true}} {
		for _, n := range []int{0, 1, 2, 3, 1000, 1001} {
			pkt, h := superFrame(c.v6, c.udp, payload(n), 0x18)
			if err := CompleteChecksum(pkt, int(h.CsumStart), int(h.CsumOffset)); err != nil {
				t.Fatal(err)
			}
			l4Valid(t, pkt)
		}
	}
	if err := CompleteChecksum(make([]byte, 40), 30, 16); !errors.Is(err, ErrBadOffsets) {
		t.Fatalf("offsets past the end: %v", err)
	}
}

func TestSegment(t *testing.T) {
	for _, c := range []struct {
		name    string
		v6, udp bool
		size    int
		want    int
	}{
		{"tcp4", false, false, 5000, 4}, {"tcp6", true, false, 1448 * 3, 3}, {"udp4", false, true, 3000, 3},
		{"tcp4 one segment", false, false, 100, 1}, {"tcp4 no payload", false, false, 0, 1},
	} {
		p := payload(c.size)
		pkt, h := superFrame(c.v6, c.udp, p, 0x80|0x18|0x01) // CWR, PSH, ACK, FIN
		n, err := Segments(pkt, h)
		if err != nil || n != c.want {
			t.Fatalf("%s: Segments = %d, %v; want %d", c.name, n, err, c.want)
		}
		var got []byte
		dst := make([]byte, 2000)
		for i := range n {
			m, err := Segment(pkt, h, i, dst)
			if err != nil {
				t.Fatalf("%s: segment %d: %v", c.name, i, err)
			}
			seg := dst[:m]
			l4Valid(t, seg)
			l4 := 34
			if c.v6 {
				l4 = 54
				if int(binary.BigEndian.Uint16(seg[18:])) != m-54 {
					t.Fatalf("%s: IPv6 payload length", c.name)
				}
			} else {
				if int(binary.BigEndian.Uint16(seg[16:])) != m-14 || binary.BigEndian.Uint16(seg[18:]) != 0x1234+uint16(i) {
					t.Fatalf("%s: IPv4 length %d or ID %#x of segment %d", c.name, binary.BigEndian.Uint16(seg[16:]), binary.BigEndian.Uint16(seg[18:]), i)
				}
			}
			hl := 20
			if c.udp {
				hl = 8
				if int(binary.BigEndian.Uint16(seg[l4+4:])) != m-l4 {
					t.Fatalf("%s: UDP length", c.name)
				}
			} else {
				if seq := binary.BigEndian.Uint32(seg[l4+4:]); seq != 0xfffff000+uint32(i*1448) {
					t.Fatalf("%s: segment %d seq %#x", c.name, i, seq)
				}
				flags, last := seg[l4+13], i == n-1
				if (flags&0x01 != 0) != last || (flags&0x08 != 0) != last || (flags&0x80 != 0) != (i == 0) || flags&0x10 == 0 {
					t.Fatalf("%s: segment %d flags %#x", c.name, i, flags)
				}
			}
			if m-l4-hl > 1448 {
				t.Fatalf("%s: segment %d carries %d bytes, over the MSS", c.name, i, m-l4-hl)
			}
			got = append(got, seg[l4+hl:]...)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("%s: payload not preserved", c.name)
		}
	}
}

func TestSegmentRejects(t *testing.T) {
	pkt, h := superFrame(false, false, payload(3000), 0x10)
	bad := h
	bad.GSOType = GSOUDP
	if _, err := Segments(pkt, bad); !errors.Is(err, ErrUnsupported) {
		t.Errorf("UFO: %v", err)
	}
	bad = h
	bad.GSOType = GSOTCPv6 // on an IPv4 frame
	if _, err := Segments(pkt, bad); !errors.Is(err, ErrUnsupported) {
		t.Errorf("TCPv6 on IPv4: %v", err)
	}
	bad = h
	bad.GSOSize = 0
	if _, err := Segments(pkt, bad); !errors.Is(err, ErrUnsupported) {
		t.Errorf("GSO size 0: %v", err)
	}
	if _, err := Segment(pkt, h, 3, make([]byte, 2000)); !errors.Is(err, ErrUnsupported) {
		t.Errorf("segment past the end: %v", err)
	}
	if _, err := Segment(pkt, h, 0, make([]byte, 100)); !errors.Is(err, ErrShort) {
		t.Errorf("small destination: %v", err)
	}
}

func TestVnetHdrRoundTrip(t *testing.T) {
	h := VnetHdr{Flags: 1, GSOType: GSOTCPv4 | GSOECN, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	b := make([]byte, VnetHdrLen)
	h.Encode(b)
	if got, err := DecodeVnetHdr(b); err != nil || got != h || !got.IsGSO() {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
}

func TestZeroAllocs(t *testing.T) {
	pkt, h := superFrame(false, false, payload(5000), 0x18)
	dst := make([]byte, 2000)
	if a := testing.AllocsPerRun(100, func() {
		Segment(pkt, h, 1, dst)
		CompleteChecksum(dst, 34, 16)
	}); a != 0 {
		t.Fatalf("allocated %v times", a)
	}
}

func FuzzSegment(f *testing.F) {
	for _, c := range []struct{ v6, udp bool }{{false, false}, {true, false}, {false, true}} {
		pkt, h := superFrame(c.v6, c.udp, payload(3000), 0x19)
		b := make([]byte, VnetHdrLen)
		h.Encode(b)
		f.Add(append(b, pkt...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := DecodeVnetHdr(in)
		if err != nil {
			return
		}
		pkt := in[VnetHdrLen:]
		CompleteChecksum(append([]byte(nil), pkt...), int(h.CsumStart), int(h.CsumOffset)) // must not panic
		n, err := Segments(pkt, h)
		if err != nil {
			return
		}
		lo, _ := parse(pkt, h)
		var got []byte
		dst := make([]byte, lo.payload+lo.mss)
		for i := range n {
			m, err := Segment(pkt, h, i, dst)
			if err != nil {
				t.Fatalf("segment %d of %d: %v", i, n, err)
			}
			got = append(got, dst[lo.payload:m]...)
		}
		if !bytes.Equal(got, pkt[lo.payload:]) {
			t.Fatal("segments do not add up to the payload")
		}
	})
}
