package offload

import (
	"encoding/binary"
	"fmt"
)

// layout is where a super-frame's headers are.
type layout struct {
	l3, l4, payload int // offsets of the IP header, the TCP/UDP header and the payload
	v6              bool
	udp             bool
	mss             int
}

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	protoTCP      = 6
	protoUDP      = 17
)

func parse(pkt []byte, h VnetHdr) (layout, error) {
	var lo layout
	if len(pkt) < 14 {
		return lo, ErrShort
	}
	lo.l3 = 14
	et := binary.BigEndian.Uint16(pkt[12:])
	if et == etherTypeVLAN {
		if len(pkt) < 18 {
			return lo, ErrShort
		}
		lo.l3, et = 18, binary.BigEndian.Uint16(pkt[16:])
	}
	var proto byte
	switch et {
	case etherTypeIPv4:
		if len(pkt) < lo.l3+20 || pkt[lo.l3]>>4 != 4 {
			return lo, fmt.Errorf("%w: bad IPv4 header", ErrUnsupported)
		}
		ihl := int(pkt[lo.l3]&0x0f) * 4
		if ihl < 20 || len(pkt) < lo.l3+ihl {
			return lo, ErrShort
		}
		lo.l4, proto = lo.l3+ihl, pkt[lo.l3+9]
	case etherTypeIPv6:
		if len(pkt) < lo.l3+40 || pkt[lo.l3]>>4 != 6 {
			return lo, fmt.Errorf("%w: bad IPv6 header", ErrUnsupported)
		}
		lo.v6, lo.l4, proto = true, lo.l3+40, pkt[lo.l3+6] // extension headers are not supported
	default:
		return lo, fmt.Errorf("%w: EtherType %#04x", ErrUnsupported, et)
	}
	switch t := h.GSOType &^ GSOECN; {
	case (t == GSOTCPv4 && !lo.v6 || t == GSOTCPv6 && lo.v6) && proto == protoTCP:
		if len(pkt) < lo.l4+20 {
			return lo, ErrShort
		}
		lo.payload = lo.l4 + int(pkt[lo.l4+12]>>4)*4
		if lo.payload < lo.l4+20 {
			return lo, fmt.Errorf("%w: TCP data offset", ErrUnsupported)
		}
	case t == GSOUDPL4 && proto == protoUDP:
		lo.udp, lo.payload = true, lo.l4+8
	default:
		return lo, fmt.Errorf("%w: GSO type %d with IP protocol %d", ErrUnsupported, h.GSOType, proto)
	}
	if len(pkt) < lo.payload {
		return lo, ErrShort
	}
	if lo.mss = int(h.GSOSize); lo.mss == 0 {
		return lo, fmt.Errorf("%w: GSO size 0", ErrUnsupported)
	}
	return lo, nil
}

// Segments returns how many segments Segment cuts the super-frame into.
func Segments(pkt []byte, h VnetHdr) (int, error) {
	lo, err := parse(pkt, h)
	if err != nil {
		return 0, err
	}
	n := (len(pkt) - lo.payload + lo.mss - 1) / lo.mss
	return max(n, 1), nil
}

// Segment writes segment i of the super-frame pkt (as Linux's TSO/USO
// would have sent it) into dst and returns its length: the headers with
// the i-th slice of the payload, IP lengths, IPv4 ID and header checksum,
// TCP sequence number and flags (FIN and PSH only on the last segment,
// CWR only on the first), and a complete TCP or UDP checksum.
func Segment(pkt []byte, h VnetHdr, i int, dst []byte) (int, error) {
	lo, err := parse(pkt, h)
	if err != nil {
		return 0, err
	}
	data := pkt[lo.payload:]
	from := i * lo.mss
	if i < 0 || from > len(data) || from == len(data) && i > 0 {
		return 0, fmt.Errorf("%w: segment %d of %d payload bytes", ErrUnsupported, i, len(data))
	}
	to := min(from+lo.mss, len(data))
	last := to == len(data)
	n := lo.payload + to - from
	if len(dst) < n {
		return 0, ErrShort
	}
	copy(dst, pkt[:lo.payload])
	copy(dst[lo.payload:], data[from:to])
	seg := dst[:n]
	l4len := n - lo.l4
	ip := seg[lo.l3:]
	if lo.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(n-lo.l3-40))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(n-lo.l3))
		binary.BigEndian.PutUint16(ip[4:], binary.BigEndian.Uint16(ip[4:])+uint16(i))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:lo.l4-lo.l3]))
	}
	l4 := seg[lo.l4:]
	var csumAt int
	if lo.udp {
		binary.BigEndian.PutUint16(l4[4:], uint16(l4len))
		csumAt = 6
	} else {
		binary.BigEndian.PutUint32(l4[4:], binary.BigEndian.Uint32(l4[4:])+uint32(from))
		if !last {
			l4[13] &^= 0x01 | 0x08 // FIN, PSH
		}
		if i > 0 {
			l4[13] &^= 0x80 // CWR
		}
		csumAt = 16
	}
	l4[csumAt], l4[csumAt+1] = 0, 0
	c := ^fold(sum(pseudoHeader(seg, lo, l4len), l4))
	if lo.udp && c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumAt:], c)
	return n, nil
}

// pseudoHeader sums the TCP/UDP pseudo-header (RFC 793, RFC 8200 8.1).
func pseudoHeader(seg []byte, lo layout, l4len int) uint64 {
	proto := uint64(protoTCP)
	if lo.udp {
		proto = protoUDP
	}
	if lo.v6 {
		return sum(proto+uint64(l4len), seg[lo.l3+8:lo.l3+40])
	}
	return sum(proto+uint64(l4len), seg[lo.l3+12:lo.l3+20])
}
