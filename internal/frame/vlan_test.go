package frame

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseVID(t *testing.T) {
	for _, ok := range []string{"1", "10", "4094"} {
		if _, err := ParseVID(ok); err != nil {
			t.Errorf("ParseVID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"0", "4095", "5000", "-1", "ten", ""} {
		_, err := ParseVID(bad)
		if !errors.Is(err, ErrInvalidVLAN) || !strings.Contains(err.Error(), "1 to 4094") {
			t.Errorf("ParseVID(%q) error = %v; want one naming 1 to 4094", bad, err)
		}
	}
}

func TestParseVLANSet(t *testing.T) {
	tests := []struct {
		in, canon string
		n         int
		errPart   string
	}{
		{"", "", 0, ""},
		{"1-100,200,300-310", "1-100,200,300-310", 112, ""},
		{" 300-310 , 200,1 - 100 ", "1-100,200,300-310", 112, ""},
		{"5,3,4,1", "1,3-5", 4, ""},
		{"1-4094", "1-4094", 4094, ""},
		{"10-20,15-30", "10-30", 21, ""},
		{"7-7", "7", 1, ""},
		{"1-100,50-", "", 0, "offset 9: expected a VLAN ID, found end of input"},
		{"0", "", 0, "offset 0: VLAN ID 0 is out of range"},
		{"4095", "", 0, "VLAN ID 4095 is out of range"},
		{"1,5000", "", 0, "offset 2: VLAN ID 5000 is out of range"},
		{"99999999999999999999", "", 0, "out of range"},
		{"20-10", "", 0, "range end 10 is below its start 20"},
		{"1;2", "", 0, "offset 1: unexpected ';'"},
		{"1,,2", "", 0, "offset 2: expected a VLAN ID, found ','"},
		{"a", "", 0, "found 'a'"},
		{"1 2", "", 0, "unexpected '2'"},
	}
	for _, tt := range tests {
		s, err := ParseVLANSet(tt.in)
		if tt.errPart != "" {
			if err == nil || !errors.Is(err, ErrInvalidVLAN) || !strings.Contains(err.Error(), tt.errPart) ||
				!strings.Contains(err.Error(), "allowed:") {
				t.Errorf("ParseVLANSet(%q) error = %v; want ErrInvalidVLAN containing %q and what is allowed", tt.in, err, tt.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseVLANSet(%q): %v", tt.in, err)
			continue
		}
		if s.String() != tt.canon || s.Len() != tt.n {
			t.Errorf("ParseVLANSet(%q) = %q (%d VLANs), want %q (%d)", tt.in, s.String(), s.Len(), tt.canon, tt.n)
		}
	}
}

func TestVLANSetOps(t *testing.T) {
	a := MustParseVLANSet("1-10")
	b := MustParseVLANSet("5-15")
	for _, tt := range []struct {
		name string
		got  VLANSet
		want string
	}{
		{"union", a.Union(&b), "1-15"},
		{"intersect", a.Intersect(&b), "5-10"},
		{"difference", a.Difference(&b), "1-4"},
	} {
		if tt.got.String() != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got.String(), tt.want)
		}
	}
	if !a.Overlaps(&b) {
		t.Error("1-10 and 5-15 should overlap")
	}
	c := MustParseVLANSet("11-20")
	if a.Overlaps(&c) {
		t.Error("1-10 and 11-20 should not overlap")
	}
	if v, ok := b.Min(); !ok || v != 5 {
		t.Errorf("Min = %v, %v", v, ok)
	}
	var empty VLANSet
	if !empty.IsEmpty() || a.IsEmpty() {
		t.Error("IsEmpty wrong")
	}
	if _, ok := empty.Min(); ok {
		t.Error("Min of empty set reported a VLAN")
	}
	var got []VID
	for v := range c.All {
		got = append(got, v)
		if v == 12 {
			break
		}
	}
	if len(got) != 2 || got[0] != 11 || got[1] != 12 {
		t.Errorf("All with break = %v", got)
	}
	a.Remove(1)
	a.Add(4094)
	if a.Contains(1) || !a.Contains(4094) || a.String() != "2-10,4094" {
		t.Errorf("after Remove/Add: %s", a)
	}
}

func TestVLANSetJSON(t *testing.T) {
	in := struct{ S VLANSet }{MustParseVLANSet("300-310,1-100,200")}
	b, err := json.Marshal(in)
	if err != nil || string(b) != `{"S":"1-100,200,300-310"}` {
		t.Fatalf("json = %s, %v", b, err)
	}
	var back struct{ S VLANSet }
	if err := json.Unmarshal(b, &back); err != nil || back.S != in.S {
		t.Fatalf("round trip = %s, %v", back.S, err)
	}
	if err := json.Unmarshal([]byte(`{"S":"1-100,50-"}`), &back); !errors.Is(err, ErrInvalidVLAN) {
		t.Fatalf("bad set error = %v", err)
	}
}

func TestTCI(t *testing.T) {
	tci := MakeTCI(5, true, 100)
	if tci.PCP() != 5 || !tci.DEI() || tci.VID() != 100 {
		t.Fatalf("TCI fields = %d %v %d", tci.PCP(), tci.DEI(), tci.VID())
	}
	w := tci.WithVID(4094)
	if w.PCP() != 5 || !w.DEI() || w.VID() != 4094 {
		t.Fatalf("WithVID fields = %d %v %d", w.PCP(), w.DEI(), w.VID())
	}
}

func FuzzParseVLANSet(f *testing.F) {
	for _, s := range []string{"", "1-100,200,300-310", " 1 - 2 ,3", "1-100,50-", "4095", "0", "20-10", "1,,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseVLANSet(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidVLAN) {
				t.Fatalf("error %v does not wrap ErrInvalidVLAN", err)
			}
			return
		}
		if set.Contains(0) || set.Contains(4095) {
			t.Fatalf("ParseVLANSet(%q) holds an invalid VID: %s", s, set)
		}
		canon := set.String()
		back, err := ParseVLANSet(canon)
		if err != nil || back != set {
			t.Fatalf("ParseVLANSet(%q).String() = %q does not parse back to the same set: %v", s, canon, err)
		}
		if back.String() != canon {
			t.Fatalf("canonical form not stable: %q → %q", canon, back.String())
		}
	})
}
