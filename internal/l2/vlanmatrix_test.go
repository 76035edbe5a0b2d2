package l2

import (
	"fmt"
	"strings"
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/vlan"
)

// matrixPorts are the modes under test, each built from the user's words.
func matrixPorts() map[string]vlan.Port {
	set := frame.MustParseVLANSet
	return map[string]vlan.Port{
		"untagged":       mustVLAN(vlan.Untagged(1)),
		"access10":       mustVLAN(vlan.Access(10)),
		"trunk-native5":  mustVLAN(vlan.Trunk(set("10,20"), 5)),
		"trunk-nonative": mustVLAN(vlan.Trunk(set("10,20"), 0)),
		"hybrid":         mustVLAN(vlan.Hybrid(10, set("10,20"), set("30"))),
	}
}

// TestVLANIngressMatrix sends every kind of frame into every mode and
// checks, on a trunk of all VLANs, which VLAN the frame joined (or which
// drop counter moved). The expectations are DESIGN.md's table, by hand.
func TestVLANIngressMatrix(t *testing.T) {
	kinds := []struct {
		name string
		vid  int // noTag, 0 (priority tag), or the tag's VID
	}{
		{"untagged", noTag}, {"priority", 0}, {"tagged5", 5}, {"tagged10", 10}, {"tagged20", 20},
		{"tagged30", 30}, {"tagged40", 40}, {"tagged4095", 4095},
	}
	// "=N": joined VLAN N. Otherwise the drop reason.
	want := map[string][]string{
		"untagged":       {"=1", "=1", "tagged-on-access", "tagged-on-access", "tagged-on-access", "tagged-on-access", "tagged-on-access", "bad-tag"},
		"access10":       {"=10", "=10", "tagged-on-access", "tagged-on-access", "tagged-on-access", "tagged-on-access", "tagged-on-access", "bad-tag"},
		"trunk-native5":  {"=5", "=5", "=5", "=10", "=20", "vlan-not-allowed", "vlan-not-allowed", "bad-tag"},
		"trunk-nonative": {"untagged-not-allowed", "untagged-not-allowed", "vlan-not-allowed", "=10", "=20", "vlan-not-allowed", "vlan-not-allowed", "bad-tag"},
		"hybrid":         {"=10", "=10", "vlan-not-allowed", "=10", "=20", "=30", "vlan-not-allowed", "bad-tag"},
	}
	for mode, model := range matrixPorts() {
		for k, kind := range kinds {
			t.Run(mode+"/"+kind.name, func(t *testing.T) {
				h := newHarness(t, Options{})
				h.add("in", PortConfig{VLAN: model})
				h.add("observer", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("1-4094"), 0))})
				const pcp = 5
				h.send("in", ethFrame(frame.Broadcast, mac(1), kind.vid, pcp, 1))
				got := h.recv("observer")
				c := h.counters("in")
				exp := want[mode][k]
				if strings.HasPrefix(exp, "=") {
					if len(got) != 1 {
						t.Fatalf("observer got %d frames, want 1 in VLAN %s (drops: %v)", len(got), exp[1:], c.DropsByReason())
					}
					e := frame.Ethernet(got[0])
					if !e.Tagged() || fmt.Sprint("=", e.TCI().VID()) != exp {
						t.Fatalf("observer got VLAN %d (tagged %v), want %s", e.TCI().VID(), e.Tagged(), exp)
					}
					if kind.vid != noTag && e.TCI().PCP() != pcp {
						t.Errorf("priority %d lost on the way (now %d)", pcp, e.TCI().PCP())
					}
					return
				}
				if len(got) != 0 {
					t.Fatalf("observer got %d frames, want the frame dropped as %s", len(got), exp)
				}
				if r := c.DropsByReason(); len(r) != 1 || r[exp] != 1 {
					t.Fatalf("drops = %v, want exactly one %s", r, exp)
				}
			})
		}
	}
}

// TestVLANEgressMatrix floods a frame of each VLAN from a trunk and checks
// how each mode lets it out: untagged, tagged with the VLAN, or not at all.
func TestVLANEgressMatrix(t *testing.T) {
	vlans := []int{1, 5, 10, 20, 30, 40}
	want := map[string]string{ // per VLAN above: U untagged, T tagged, - not a member
		"untagged":       "U-----",
		"access10":       "--U---",
		"trunk-native5":  "-UTT--",
		"trunk-nonative": "--TT--",
		"hybrid":         "--UUT-",
	}
	for mode, model := range matrixPorts() {
		h := newHarness(t, Options{})
		h.add("out", PortConfig{VLAN: model})
		h.add("trunk", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("1-4094"), 0))})
		for i, v := range vlans {
			sent := ethFrame(frame.Broadcast, mac(1), v, 3, uint32(v))
			h.send("trunk", sent)
			got := h.recv("out")
			exp := want[mode][i]
			switch {
			case exp == '-' && len(got) != 0:
				t.Errorf("%s, VLAN %d: got %d frames, want none (not a member)", mode, v, len(got))
			case exp != '-' && len(got) != 1:
				t.Errorf("%s, VLAN %d: got %d frames, want 1", mode, v, len(got))
			case exp == 'U' && frame.Ethernet(got[0]).Tagged():
				t.Errorf("%s, VLAN %d: left tagged, want untagged", mode, v)
			case exp == 'U' && string(got[0][12:]) != string(sent[16:]):
				t.Errorf("%s, VLAN %d: untagged frame differs from the sent one after the tag", mode, v)
			case exp == 'T' && (!frame.Ethernet(got[0]).Tagged() || frame.Ethernet(got[0]).TCI() != frame.MakeTCI(3, false, frame.VID(v))):
				t.Errorf("%s, VLAN %d: got % x, want tagged with VLAN %d priority 3", mode, v, got[0][:18], v)
			}
		}
	}
}
