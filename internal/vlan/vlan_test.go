package vlan

import (
	"errors"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
)

func TestPortConstructors(t *testing.T) {
	set := frame.MustParseVLANSet
	var bad frame.VLANSet
	bad.Add(4095)
	tests := []struct {
		name   string
		make   func() (Port, error)
		desc   string   // String() when valid
		errors []string // substrings, all required, when invalid
	}{
		{"untagged", func() (Port, error) { return Untagged(1) }, "untagged (VLAN 1)", nil},
		{"access", func() (Port, error) { return Access(10) }, "access 10", nil},
		{"access 0", func() (Port, error) { return Access(0) }, "", []string{`access VLAN "0"`, "1 to 4094"}},
		{"access 4095", func() (Port, error) { return Access(4095) }, "", []string{`access VLAN "4095"`}},
		{"access 5000", func() (Port, error) { return Access(5000) }, "", []string{`access VLAN "5000"`}},
		{"trunk native", func() (Port, error) { return Trunk(set("1-100"), 1) }, "trunk 1-100 native 1", nil},
		{"trunk", func() (Port, error) { return Trunk(set("10,20"), 0) }, "trunk 10,20", nil},
		{"trunk native outside set", func() (Port, error) { return Trunk(set("10,20"), 5) }, "trunk 5,10,20 native 5", nil},
		{"trunk empty", func() (Port, error) { return Trunk(frame.VLANSet{}, 0) }, "", []string{"trunk allowed VLANs", "at least one VLAN"}},
		{"trunk bad native", func() (Port, error) { return Trunk(set("10"), 4095) }, "", []string{`trunk native VLAN "4095"`}},
		{"trunk 4095", func() (Port, error) { return Trunk(bad, 1) }, "", []string{`trunk allowed VLANs "4095"`}},
		{"hybrid", func() (Port, error) { return Hybrid(10, set("10,20"), set("30-40")) },
			"hybrid pvid 10 untagged 10,20 tagged 30-40", nil},
		{"hybrid pvid tagged", func() (Port, error) { return Hybrid(30, set("10"), set("30")) },
			"hybrid pvid 30 untagged 10 tagged 30", nil},
		{"hybrid overlap", func() (Port, error) { return Hybrid(10, set("10,20"), set("20-30")) }, "",
			[]string{"hybrid tagged VLANs", "20 is in both sets"}},
		{"hybrid pvid in neither", func() (Port, error) { return Hybrid(5, set("10"), set("20")) }, "",
			[]string{`hybrid PVID "5"`, "untagged set (10)", "tagged set (20)"}},
		{"hybrid every problem at once", func() (Port, error) { return Hybrid(0, set("10"), set("10")) }, "",
			[]string{`hybrid PVID "0"`, "10 is in both sets"}},
	}
	for _, tt := range tests {
		p, err := tt.make()
		if tt.errors == nil {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			} else if p.String() != tt.desc {
				t.Errorf("%s: String = %q, want %q", tt.name, p.String(), tt.desc)
			}
			continue
		}
		if err == nil || !errors.Is(err, field.ErrInvalid) {
			t.Errorf("%s: err = %v, want field.ErrInvalid", tt.name, err)
			continue
		}
		for _, want := range tt.errors {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not contain %q", tt.name, err, want)
			}
		}
	}
}

func TestIngress(t *testing.T) {
	set := frame.MustParseVLANSet
	must := func(p Port, err error) Port {
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	trunk := must(Trunk(set("10,20"), 5))
	tests := []struct {
		p       Port
		tagged  bool
		vid     frame.VID
		want    frame.VID
		verdict Verdict
	}{
		{must(Access(10)), false, 0, 10, Accept},
		{must(Access(10)), true, 0, 10, Accept}, // priority-tagged
		{must(Access(10)), true, 10, 0, TaggedOnAccess},
		{trunk, true, 20, 20, Accept},
		{trunk, true, 5, 5, Accept},
		{trunk, true, 30, 0, NotMember},
		{trunk, true, 4095, 0, BadTag},
		{must(Trunk(set("10"), 0)), false, 0, 0, UntaggedNotAllowed},
	}
	for i, tt := range tests {
		v, verdict := tt.p.Ingress(tt.tagged, tt.vid)
		if v != tt.want || verdict != tt.verdict {
			t.Errorf("%d: %s Ingress(%v, %d) = %d, %d; want %d, %d", i, tt.p, tt.tagged, tt.vid, v, verdict, tt.want, tt.verdict)
		}
	}
}
