package frame

import (
	"encoding/binary"
	"errors"
)

// Sizes of the Ethernet header and the 802.1Q tag (IEEE 802.3 clause 3.1.1,
// IEEE 802.1Q clause 9).
const (
	HeaderLen = 14 // destination (6) + source (6) + EtherType (2)
	TagLen    = 4  // TPID (2) + TCI (2)
	addrLen   = 12 // destination + source
)

// Frame errors. They are sentinels so that the switch can count them by kind.
var (
	// ErrRunt: shorter than an Ethernet header.
	ErrRunt = errors.New("frame shorter than an Ethernet header (14 bytes)")
	// ErrTruncatedTag: the TPID says 802.1Q but the tag or the inner EtherType is cut off.
	ErrTruncatedTag = errors.New("802.1Q-tagged frame shorter than 18 bytes")
	// ErrNoHeadroom: fewer than TagLen bytes in front of the frame for a tag push.
	ErrNoHeadroom = errors.New("no headroom in front of the frame for an 802.1Q tag")
	// ErrNotTagged: a tag pop on a frame without an 802.1Q tag.
	ErrNotTagged = errors.New("frame has no 802.1Q tag")
	// ErrTooBig: a port's Write stopped at a frame longer than its device
	// takes (its MTU); the frames after it were not tried. The switch
	// counts that frame too-big and writes the rest.
	ErrTooBig = errors.New("frame longer than the port's device takes")
)

// Ethernet is a view of an Ethernet II frame, starting at the destination
// address (no preamble, no FCS):
//
//	+------------+------------+------+-----+-----------+---------
//	| dst (6)    | src (6)    |TPID/ | TCI | EtherType | payload
//	|            |            |Ether-| (if |  (if      |
//	|            |            | Type |0x8100)  tagged)  |
//	+------------+------------+------+-----+-----------+---------
//
// The accessors do not check the length: call Check first (or know the
// frame is at least HeaderLen, and HeaderLen+TagLen when Tagged).
type Ethernet []byte

// Check validates the length of the header, including the 802.1Q tag when
// the outer EtherType is 0x8100. An S-tag (0x88a8) is payload to us.
func (e Ethernet) Check() error {
	if len(e) < HeaderLen {
		return ErrRunt
	}
	if e.Tagged() && len(e) < HeaderLen+TagLen {
		return ErrTruncatedTag
	}
	return nil
}

// Dst returns the destination address.
func (e Ethernet) Dst() MAC { return MAC(e[0:6]) }

// Src returns the source address.
func (e Ethernet) Src() MAC { return MAC(e[6:12]) }

// SetDst overwrites the destination address.
func (e Ethernet) SetDst(m MAC) { copy(e[0:6], m[:]) }

// SetSrc overwrites the source address.
func (e Ethernet) SetSrc(m MAC) { copy(e[6:12], m[:]) }

// OuterType returns the EtherType field that follows the source address:
// the TPID when tagged.
func (e Ethernet) OuterType() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// Tagged reports whether the frame carries an 802.1Q C-tag (TPID 0x8100).
func (e Ethernet) Tagged() bool { return e.OuterType() == TPID8021Q }

// TCI returns the tag control information; only meaningful when Tagged.
func (e Ethernet) TCI() TCI { return TCI(binary.BigEndian.Uint16(e[14:16])) }

// SetTCI overwrites the tag control information of a tagged frame.
func (e Ethernet) SetTCI(t TCI) { binary.BigEndian.PutUint16(e[14:16], uint16(t)) }

// EtherType returns the payload's EtherType: the inner one when tagged.
func (e Ethernet) EtherType() uint16 {
	if e.Tagged() {
		return binary.BigEndian.Uint16(e[16:18])
	}
	return e.OuterType()
}

// PayloadOffset returns the offset of the payload after the header and tag.
func (e Ethernet) PayloadOffset() int {
	if e.Tagged() {
		return HeaderLen + TagLen
	}
	return HeaderLen
}

// PushTag inserts an 802.1Q tag with tci in front of the EtherType of the
// frame b[off:], moving the two addresses 4 bytes into the headroom
// b[off-4:off]; no other byte moves. It returns the new start of the frame,
// off-4. The frame must be at least HeaderLen long.
func PushTag(b []byte, off int, tci TCI) (int, error) {
	if off < TagLen {
		return off, ErrNoHeadroom
	}
	if len(b)-off < HeaderLen {
		return off, ErrRunt
	}
	n := off - TagLen
	copy(b[n:n+addrLen], b[off:off+addrLen])
	binary.BigEndian.PutUint16(b[n+addrLen:], TPID8021Q)
	binary.BigEndian.PutUint16(b[n+addrLen+2:], uint16(tci))
	return n, nil
}

// PopTag removes the 802.1Q tag of the frame b[off:] by moving the two
// addresses 4 bytes forward over it. It returns the new start, off+4, and
// the removed TCI.
func PopTag(b []byte, off int) (int, TCI, error) {
	e := Ethernet(b[off:])
	if err := e.Check(); err != nil {
		return off, 0, err
	}
	if !e.Tagged() {
		return off, 0, ErrNotTagged
	}
	tci := e.TCI()
	n := off + TagLen
	copy(b[n:n+addrLen], b[off:off+addrLen])
	return n, tci, nil
}
