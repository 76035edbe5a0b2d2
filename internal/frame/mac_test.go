package frame

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	want := MAC{0x02, 0x56, 0x53, 0xab, 0x00, 0xff}
	tests := []struct {
		in      string
		want    MAC
		errPart string // "" = no error; else a substring the error must contain
	}{
		{"02:56:53:ab:00:ff", want, ""},
		{"02-56-53-AB-00-FF", want, ""},
		{"0256.53ab.00ff", want, ""},
		{"025653AB00FF", want, ""},
		{"", MAC{}, "length 0"},
		{"02:56:53:ab:00", MAC{}, "length 14, want 17"},
		{"02:56:53-ab:00:ff", MAC{}, "offset 8"},
		{"02:56:53:zb:00:ff", MAC{}, "offset 9: not a hex digit"},
		{"02_56_53_ab_00_ff", MAC{}, "length 17, want 12"},
		{"0256.53ab:00ff", MAC{}, "offset 9"},
		{"025653AB00FG", MAC{}, "offset 11"},
	}
	for _, tt := range tests {
		got, err := ParseMAC(tt.in)
		if tt.errPart == "" {
			if err != nil || got != tt.want {
				t.Errorf("ParseMAC(%q) = %v, %v; want %v, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseMAC(%q) = %v, nil; want an error", tt.in, got)
			continue
		}
		if !errors.Is(err, ErrInvalidMAC) || !strings.Contains(err.Error(), tt.errPart) ||
			!strings.Contains(err.Error(), tt.in) || !strings.Contains(err.Error(), "allowed:") {
			t.Errorf("ParseMAC(%q) error %q: want ErrInvalidMAC naming the input, %q and what is allowed", tt.in, err, tt.errPart)
		}
	}
}

func TestMACPredicates(t *testing.T) {
	tests := []struct {
		mac                             string
		multicast, broadcast, zero, loc bool
		reserved, station               bool
	}{
		{"ff:ff:ff:ff:ff:ff", true, true, false, true, false, false},
		{"00:00:00:00:00:00", false, false, true, false, false, false},
		{"01:00:5e:00:00:01", true, false, false, false, false, false},
		{"01:80:c2:00:00:00", true, false, false, false, true, false},
		{"01:80:c2:00:00:0e", true, false, false, false, true, false},
		{"01:80:c2:00:00:10", true, false, false, false, false, false},
		{"02:56:53:00:00:01", false, false, false, true, false, true},
		{"52:54:00:12:34:56", false, false, false, true, false, true},
		{"00:15:5d:01:02:03", false, false, false, false, false, true},
	}
	for _, tt := range tests {
		m := MustParseMAC(tt.mac)
		got := []bool{m.IsMulticast(), m.IsBroadcast(), m.IsZero(), m.IsLocallyAdministered(), m.IsReservedGroup(), m.IsUnicastStation()}
		want := []bool{tt.multicast, tt.broadcast, tt.zero, tt.loc, tt.reserved, tt.station}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: predicate %d = %v, want %v (multicast, broadcast, zero, local, reserved, station)", tt.mac, i, got[i], want[i])
			}
		}
	}
}

func TestMACText(t *testing.T) {
	m := MustParseMAC("02-56-53-AB-00-FF")
	if s := m.String(); s != "02:56:53:ab:00:ff" {
		t.Fatalf("String = %q", s)
	}
	b, err := json.Marshal(struct{ M MAC }{m})
	if err != nil || string(b) != `{"M":"02:56:53:ab:00:ff"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var back struct{ M MAC }
	if err := json.Unmarshal(b, &back); err != nil || back.M != m {
		t.Fatalf("json round trip = %v, %v", back.M, err)
	}
	if err := json.Unmarshal([]byte(`{"M":"nope"}`), &back); !errors.Is(err, ErrInvalidMAC) {
		t.Fatalf("bad json MAC error = %v", err)
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"02:56:53:ab:00:ff", "02-56-53-AB-00-FF", "0256.53ab.00ff", "025653AB00FF", "", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseMAC(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidMAC) {
				t.Fatalf("error %v does not wrap ErrInvalidMAC", err)
			}
			return
		}
		back, err := ParseMAC(m.String())
		if err != nil || back != m {
			t.Fatalf("ParseMAC(%q) = %v; String→Parse = %v, %v", s, m, back, err)
		}
	})
}

func TestMACUint64(t *testing.T) {
	m := MustParseMAC("02:56:53:ab:00:ff")
	if m.Uint64() != 0x025653ab00ff || MACFromUint64(m.Uint64()) != m || MACFromUint64(m.Uint64()+1) != MustParseMAC("02:56:53:ab:01:00") {
		t.Fatalf("Uint64 round trip of %s: %#x", m, m.Uint64())
	}
}
