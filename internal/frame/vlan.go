package frame

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
)

// A VID is an IEEE 802.1Q VLAN identifier. Valid VLANs are 1–4094; 0 means
// "priority-tagged, no VLAN" on the wire and 4095 is reserved.
type VID uint16

// VID limits.
const (
	MinVID VID = 1
	MaxVID VID = 4094
)

// ErrInvalidVLAN is wrapped by every VLAN ID and VLAN set parse error.
var ErrInvalidVLAN = errors.New("invalid VLAN")

// IsValid reports whether v is a usable VLAN ID (1–4094).
func (v VID) IsValid() bool { return v >= MinVID && v <= MaxVID }

// String returns v in decimal.
func (v VID) String() string { return strconv.Itoa(int(v)) }

// ParseVID parses a decimal VLAN ID in 1–4094.
func ParseVID(s string) (VID, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < int(MinVID) || n > int(MaxVID) {
		return 0, &VLANError{Input: s, Msg: "not a VLAN ID", Allowed: "a whole number from 1 to 4094"}
	}
	return VID(n), nil
}

// VLANError describes why a string is not a VLAN ID or VLAN set.
type VLANError struct {
	Input   string // the text that was parsed
	Offset  int    // byte offset of the problem in Input
	Msg     string // what is wrong there
	Allowed string // what would have been accepted
}

func (e *VLANError) Error() string {
	return fmt.Sprintf("invalid VLAN %q at offset %d: %s; allowed: %s", e.Input, e.Offset, e.Msg, e.Allowed)
}

// Unwrap makes errors.Is(err, ErrInvalidVLAN) true.
func (e *VLANError) Unwrap() error { return ErrInvalidVLAN }

// TPID8021Q is the EtherType of an IEEE 802.1Q customer VLAN tag (C-tag).
const TPID8021Q = 0x8100

// A TCI is an 802.1Q Tag Control Information field:
//
//	 15 14 13  12  11 ........... 0
//	+--------+---+-----------------+
//	|  PCP   |DEI|       VID       |
//	+--------+---+-----------------+
type TCI uint16

// MakeTCI builds a TCI from its fields; out-of-range bits are masked off.
func MakeTCI(pcp uint8, dei bool, vid VID) TCI {
	t := TCI(pcp&7)<<13 | TCI(vid&0x0fff)
	if dei {
		t |= 1 << 12
	}
	return t
}

// PCP is the 3-bit priority code point.
func (t TCI) PCP() uint8 { return uint8(t >> 13) }

// DEI is the drop eligible indicator.
func (t TCI) DEI() bool { return t&(1<<12) != 0 }

// VID is the 12-bit VLAN identifier (0 = priority tag, 4095 reserved).
func (t TCI) VID() VID { return VID(t & 0x0fff) }

// WithVID returns t with its VID replaced, keeping PCP and DEI.
func (t TCI) WithVID(v VID) TCI { return t&0xf000 | TCI(v&0x0fff) }

// A VLANSet is a set of VLAN IDs 0–4095 as a 4096-bit map. Its zero value is
// the empty set. Sets made by ParseVLANSet hold only valid VIDs (1–4094).
// It is 512 bytes: pass a pointer on hot paths.
type VLANSet struct {
	w [64]uint64
}

// Add puts v into the set.
func (s *VLANSet) Add(v VID) { s.w[(v&0xfff)>>6] |= 1 << (v & 63) }

// AddRange puts lo..hi (inclusive) into the set.
func (s *VLANSet) AddRange(lo, hi VID) {
	for v := lo; v <= hi && v <= 4095; v++ {
		s.Add(v)
	}
}

// Words returns the set as 64 words of 64 bits, VLAN v at bit v%64 of
// word v/64 (the layout of the kernel data path's maps).
func (s *VLANSet) Words() [64]uint64 { return s.w }

// Remove takes v out of the set.
func (s *VLANSet) Remove(v VID) { s.w[(v&0xfff)>>6] &^= 1 << (v & 63) }

// Contains reports whether v is in the set.
func (s *VLANSet) Contains(v VID) bool { return s.w[(v&0xfff)>>6]&(1<<(v&63)) != 0 }

// Len returns the number of VLANs in the set.
func (s *VLANSet) Len() int {
	n := 0
	for _, w := range s.w {
		n += bits.OnesCount64(w)
	}
	return n
}

// IsEmpty reports whether the set has no VLANs.
func (s *VLANSet) IsEmpty() bool { return *s == VLANSet{} }

// Union returns s ∪ o.
func (s *VLANSet) Union(o *VLANSet) VLANSet {
	var r VLANSet
	for i := range r.w {
		r.w[i] = s.w[i] | o.w[i]
	}
	return r
}

// Intersect returns s ∩ o.
func (s *VLANSet) Intersect(o *VLANSet) VLANSet {
	var r VLANSet
	for i := range r.w {
		r.w[i] = s.w[i] & o.w[i]
	}
	return r
}

// Difference returns s \ o.
func (s *VLANSet) Difference(o *VLANSet) VLANSet {
	var r VLANSet
	for i := range r.w {
		r.w[i] = s.w[i] &^ o.w[i]
	}
	return r
}

// Overlaps reports whether s and o share a VLAN.
func (s *VLANSet) Overlaps(o *VLANSet) bool {
	for i := range s.w {
		if s.w[i]&o.w[i] != 0 {
			return true
		}
	}
	return false
}

// Min returns the lowest VLAN in the set and false when it is empty.
func (s *VLANSet) Min() (VID, bool) {
	for i, w := range s.w {
		if w != 0 {
			return VID(i*64 + bits.TrailingZeros64(w)), true
		}
	}
	return 0, false
}

// All calls yield for each VLAN in ascending order (a range-over-func iterator).
func (s *VLANSet) All(yield func(VID) bool) {
	for i, w := range s.w {
		for w != 0 {
			b := bits.TrailingZeros64(w)
			if !yield(VID(i*64 + b)) {
				return
			}
			w &^= 1 << b
		}
	}
}

// AppendTo appends the canonical compact form ("1-100,200,300-310"; ""
// for the empty set) to b.
func (s *VLANSet) AppendTo(b []byte) []byte {
	first := true
	for v := 0; v < 4096; {
		if !s.Contains(VID(v)) {
			v++
			continue
		}
		end := v
		for end+1 < 4096 && s.Contains(VID(end+1)) {
			end++
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendInt(b, int64(v), 10)
		if end > v {
			b = append(b, '-')
			b = strconv.AppendInt(b, int64(end), 10)
		}
		v = end + 1
	}
	return b
}

// String returns the canonical compact form, e.g. "1-100,200,300-310".
func (s VLANSet) String() string { return string(s.AppendTo(nil)) }

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (s VLANSet) MarshalText() ([]byte, error) { return s.AppendTo(nil), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseVLANSet.
func (s *VLANSet) UnmarshalText(b []byte) error {
	v, err := ParseVLANSet(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

const vlanSetAllowed = `comma-separated VLAN IDs (1-4094) and ranges "lo-hi" with lo <= hi, e.g. "1-100,200,300-310"`

// ParseVLANSet parses a comma-separated list of VLAN IDs and inclusive
// ranges, such as "1-100,200,300-310". Spaces around items are allowed,
// items may overlap and come in any order; "" is the empty set. Every
// VLAN must be in 1–4094.
func ParseVLANSet(s string) (VLANSet, error) {
	var set VLANSet
	p := parser{s: s}
	p.skipSpace()
	if p.eof() {
		return set, nil
	}
	for {
		lo, err := p.vid()
		if err != nil {
			return VLANSet{}, err
		}
		hi := lo
		p.skipSpace()
		if p.peek() == '-' {
			p.i++
			p.skipSpace()
			at := p.i
			if hi, err = p.vid(); err != nil {
				return VLANSet{}, err
			}
			if hi < lo {
				return VLANSet{}, &VLANError{s, at, fmt.Sprintf("range end %d is below its start %d", hi, lo), vlanSetAllowed}
			}
			p.skipSpace()
		}
		set.AddRange(lo, hi)
		if p.eof() {
			return set, nil
		}
		if p.peek() != ',' {
			return VLANSet{}, &VLANError{s, p.i, fmt.Sprintf("unexpected %q, want ',' or '-'", p.peek()), vlanSetAllowed}
		}
		p.i++
		p.skipSpace()
	}
}

// MustParseVLANSet is ParseVLANSet for constants in tests and tables; it panics on error.
func MustParseVLANSet(s string) VLANSet {
	v, err := ParseVLANSet(s)
	if err != nil {
		panic(err)
	}
	return v
}

type parser struct {
	s string
	i int
}

func (p *parser) eof() bool { return p.i >= len(p.s) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *parser) skipSpace() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *parser) vid() (VID, error) {
	start := p.i
	n := 0
	for !p.eof() && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		if n <= 4095 {
			n = n*10 + int(p.s[p.i]-'0')
		}
		p.i++
	}
	if p.i == start {
		what := "end of input"
		if !p.eof() {
			what = strconv.QuoteRune(rune(p.s[p.i]))
		}
		return 0, &VLANError{p.s, start, "expected a VLAN ID, found " + what, vlanSetAllowed}
	}
	if n < int(MinVID) || n > int(MaxVID) {
		return 0, &VLANError{p.s, start, fmt.Sprintf("VLAN ID %s is out of range", p.s[start:p.i]), vlanSetAllowed}
	}
	return VID(n), nil
}
