package frame

import (
	"errors"
	"fmt"
)

// A MAC is an IEEE 802 48-bit MAC address. Its zero value (00:00:00:00:00:00)
// is not a valid station address; see IsZero.
type MAC [6]byte

// Broadcast is the all-ones address ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// macFormats is what ParseMAC accepts, for error messages.
const macFormats = `"aa:bb:cc:dd:ee:ff", "aa-bb-cc-dd-ee-ff", "aabb.ccdd.eeff" or "aabbccddeeff" (hex digits)`

// ErrInvalidMAC is wrapped by every error ParseMAC returns.
var ErrInvalidMAC = errors.New("invalid MAC address")

// MACError describes why a string is not a MAC address.
type MACError struct {
	Input  string // the text that was parsed
	Offset int    // byte offset of the problem in Input
	Msg    string // what is wrong there
}

func (e *MACError) Error() string {
	return fmt.Sprintf("invalid MAC address %q at offset %d: %s; allowed: %s", e.Input, e.Offset, e.Msg, macFormats)
}

// Unwrap makes errors.Is(err, ErrInvalidMAC) true.
func (e *MACError) Unwrap() error { return ErrInvalidMAC }

// ParseMAC parses a MAC address written as six colon- or dash-separated
// hex octets (Linux and Windows/Hyper-V style), three dot-separated groups
// of four hex digits (Cisco style) or twelve bare hex digits (Hyper-V's
// -StaticMacAddress style). Case does not matter.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	want := 12
	switch {
	case len(s) > 2 && (s[2] == ':' || s[2] == '-'):
		want = 17
	case len(s) > 4 && s[4] == '.':
		want = 14
	}
	if len(s) != want {
		return m, &MACError{s, min(len(s), want), fmt.Sprintf("length %d, want %d characters for this format", len(s), want)}
	}
	switch want {
	case 17:
		sep := s[2]
		for i := 0; i < 6; i++ {
			p := i * 3
			if i > 0 && s[p-1] != sep {
				return m, &MACError{s, p - 1, fmt.Sprintf("separator %q, want %q like the first one", s[p-1], sep)}
			}
			b, off, ok := hexByte(s, p)
			if !ok {
				return m, &MACError{s, off, "not a hex digit"}
			}
			m[i] = b
		}
	case 14:
		for i := 0; i < 3; i++ {
			p := i * 5
			if i > 0 && s[p-1] != '.' {
				return m, &MACError{s, p - 1, fmt.Sprintf("separator %q, want '.'", s[p-1])}
			}
			for j := 0; j < 2; j++ {
				b, off, ok := hexByte(s, p+2*j)
				if !ok {
					return m, &MACError{s, off, "not a hex digit"}
				}
				m[2*i+j] = b
			}
		}
	default:
		for i := 0; i < 6; i++ {
			b, off, ok := hexByte(s, 2*i)
			if !ok {
				return m, &MACError{s, off, "not a hex digit"}
			}
			m[i] = b
		}
	}
	return m, nil
}

// MustParseMAC is ParseMAC for constants in tests and tables; it panics on error.
func MustParseMAC(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func hexByte(s string, p int) (b byte, badOffset int, ok bool) {
	hi, ok1 := unhex(s[p])
	if !ok1 {
		return 0, p, false
	}
	lo, ok2 := unhex(s[p+1])
	if !ok2 {
		return 0, p + 1, false
	}
	return hi<<4 | lo, 0, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

const hexDigits = "0123456789abcdef"

// AppendTo appends the canonical form "aa:bb:cc:dd:ee:ff" to b.
func (m MAC) AppendTo(b []byte) []byte {
	for i, o := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hexDigits[o>>4], hexDigits[o&0xf])
	}
	return b
}

// String returns the canonical lower-case, colon-separated form.
func (m MAC) String() string {
	var buf [17]byte
	return string(m.AppendTo(buf[:0]))
}

// MarshalText implements encoding.TextMarshaler with the canonical form.
func (m MAC) MarshalText() ([]byte, error) { return m.AppendTo(make([]byte, 0, 17)), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseMAC.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// IsMulticast reports whether the I/G bit is set (group address; includes broadcast).
func (m MAC) IsMulticast() bool { return m[0]&0x01 != 0 }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == Broadcast }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// IsLocallyAdministered reports whether the U/L bit is set.
func (m MAC) IsLocallyAdministered() bool { return m[0]&0x02 != 0 }

// IsUnicastStation reports whether m can be a station's source address:
// neither a group address nor all zeros.
func (m MAC) IsUnicastStation() bool { return !m.IsMulticast() && !m.IsZero() }

// IsReservedGroup reports whether m is one of the IEEE 802.1D reserved
// group addresses 01:80:c2:00:00:00–0f (STP, pause, LACP, 802.1X, LLDP, ...),
// which a bridge never forwards.
func (m MAC) IsReservedGroup() bool {
	return m[0] == 0x01 && m[1] == 0x80 && m[2] == 0xc2 && m[3] == 0 && m[4] == 0 && m[5] <= 0x0f
}

// Uint64 returns m as a 48-bit number, for address arithmetic.
func (m MAC) Uint64() uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// MACFromUint64 is the inverse of Uint64 (the top 16 bits are ignored).
func MACFromUint64(v uint64) MAC {
	return MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
