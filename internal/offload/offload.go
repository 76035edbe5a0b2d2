// Package offload finishes in software what a sender left to "hardware":
// it completes partial (CHECKSUM_PARTIAL) TCP/UDP checksums and cuts
// TSO/USO super-frames into wire-sized segments, as described by a
// virtio-net header (the header Linux attaches with PACKET_VNET_HDR and
// IFF_VNET_HDR). It does no I/O and allocates nothing.
package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// VnetHdrLen is the size of struct virtio_net_hdr (without num_buffers).
const VnetHdrLen = 10

// virtio_net_hdr flags and GSO types (virtio spec 5.1.6; linux/virtio_net.h).
const (
	FlagNeedsCsum = 1
	FlagDataValid = 2

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3 // UFO: IP fragmentation, not supported
	GSOTCPv6 = 4
	GSOUDPL4 = 5 // USO: one UDP datagram per segment
	GSOECN   = 0x80
)

// VnetHdr is a decoded virtio_net_hdr.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// DecodeVnetHdr reads a virtio_net_hdr in the host's (little-endian) byte
// order, as packet sockets and TAPs use on x86 and arm64.
func DecodeVnetHdr(b []byte) (VnetHdr, error) {
	if len(b) < VnetHdrLen {
		return VnetHdr{}, ErrShort
	}
	return VnetHdr{
		Flags: b[0], GSOType: b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:]),
	}, nil
}

// Encode writes h into b[:VnetHdrLen].
func (h VnetHdr) Encode(b []byte) {
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// IsGSO reports whether the frame is a super-frame to be segmented.
func (h VnetHdr) IsGSO() bool { return h.GSOType&^GSOECN != GSONone }

// Errors; all are per-frame problems that the caller counts and drops.
var (
	ErrShort       = errors.New("offload: frame too short for its headers")
	ErrUnsupported = errors.New("offload: unsupported frame for segmentation")
	ErrBadOffsets  = errors.New("offload: checksum offsets outside the frame")
)

// CompleteChecksum finishes a partial checksum: the 16-bit field at
// start+offset holds the pseudo-header sum and the rest of the packet
// from start on is summed into it, as the kernel's skb_checksum_help does
// (a result of 0 is sent as 0xffff).
func CompleteChecksum(pkt []byte, start, offset int) error {
	if start < 0 || offset < 0 || start+offset+2 > len(pkt) {
		return fmt.Errorf("%w: start %d offset %d in %d bytes", ErrBadOffsets, start, offset, len(pkt))
	}
	s := ^fold(sum(0, pkt[start:]))
	if s == 0 {
		s = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[start+offset:], s)
	return nil
}

// sum adds b as big-endian 16-bit words to acc (RFC 1071), 4 bytes at a time.
func sum(acc uint64, b []byte) uint64 {
	for len(b) >= 4 {
		acc += uint64(binary.BigEndian.Uint32(b))
		b = b[4:]
	}
	if len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

func fold(acc uint64) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// Checksum returns the Internet checksum of b.
func Checksum(b []byte) uint16 { return ^fold(sum(0, b)) }

// Features is what a port carries besides plain wire-sized frames with
// complete checksums. The zero value is a plain port: no virtio-net header.
type Features uint8

// Feature bits.
const (
	// Vnet: every frame read and written has a virtio-net header in the
	// VnetHdrLen bytes in front of it. Without it, no other bit counts.
	Vnet Features = 1 << iota
	// Csum: frames may leave with a partial checksum (FlagNeedsCsum).
	Csum
	// TSO: TCP super-frames (GSOTCPv4, GSOTCPv6, with or without ECN) may leave whole.
	TSO
	// USO: UDP super-frames (GSOUDPL4) may leave whole.
	USO
)

// All is every feature: what a TAP or packet socket with virtio-net headers takes.
const All = Vnet | Csum | TSO | USO

// Takes reports whether a port with features f can send a frame described
// by h as it is, without a checksum completed or the frame segmented first.
func (f Features) Takes(h VnetHdr) bool {
	if f&Vnet == 0 {
		return h.Flags&FlagNeedsCsum == 0 && !h.IsGSO()
	}
	if h.Flags&FlagNeedsCsum != 0 && f&Csum == 0 {
		return false
	}
	switch h.GSOType &^ GSOECN {
	case GSONone:
		return true
	case GSOTCPv4, GSOTCPv6:
		return f&TSO != 0
	case GSOUDPL4:
		return f&USO != 0
	}
	return false
}

// String names the features, as "vnet-hdr,csum,tso,uso" or "none".
func (f Features) String() string {
	if f&Vnet == 0 {
		return "none"
	}
	var names []string
	for _, n := range []struct {
		bit  Features
		name string
	}{{Vnet, "vnet-hdr"}, {Csum, "csum"}, {TSO, "tso"}, {USO, "uso"}} {
		if f&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// Check reports whether h is a header this package can finish for the
// n-byte frame after it: checksum offsets inside the frame, and a GSO type
// of TCP or UDP-L4 with a segment size. A frame that fails is dropped.
func (h VnetHdr) Check(n int) error {
	if h.Flags&FlagNeedsCsum != 0 && int(h.CsumStart)+int(h.CsumOffset)+2 > n {
		return fmt.Errorf("%w: start %d offset %d in %d bytes", ErrBadOffsets, h.CsumStart, h.CsumOffset, n)
	}
	switch h.GSOType &^ GSOECN {
	case GSONone:
		return nil
	case GSOTCPv4, GSOTCPv6, GSOUDPL4:
		if h.GSOSize == 0 {
			return fmt.Errorf("%w: GSO size 0", ErrUnsupported)
		}
		return nil
	}
	return fmt.Errorf("%w: GSO type %d", ErrUnsupported, h.GSOType)
}

// Shift returns h for the same frame with n bytes inserted (n < 0:
// removed) before its IP header, as when an 802.1Q tag is pushed or popped:
// the checksum start and the header length move with the headers.
func (h VnetHdr) Shift(n int) VnetHdr {
	if h.Flags&FlagNeedsCsum != 0 {
		h.CsumStart = uint16(int(h.CsumStart) + n)
	}
	if h.IsGSO() && h.HdrLen != 0 {
		h.HdrLen = uint16(int(h.HdrLen) + n)
	}
	return h
}
