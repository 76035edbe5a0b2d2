// Package vlan is the IEEE 802.1Q port model of DESIGN.md: a port's PVID,
// member set, untagged set and admit rule, built from the user's modes
// (untagged, access, trunk, hybrid) with every invalid combination
// rejected, and the ingress classification of a frame. It is pure, so that
// the switch core, the configuration and the CLI agree on one model.
package vlan

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
)

// Mode is how a port's VLAN model was described by the user. The model
// itself (PVID, member set, untagged set, admit rule) decides forwarding;
// the mode is kept for display and for editing.
type Mode uint8

// The user-facing VLAN modes of DESIGN.md.
const (
	ModeUntagged Mode = iota // the switch's default VLAN, untagged
	ModeAccess               // one VLAN, untagged; tagged frames dropped
	ModeTrunk                // tagged allowed set plus an optional untagged native VLAN
	ModeHybrid               // PVID plus separate untagged and tagged sets
)

var modeNames = [...]string{"untagged", "access", "trunk", "hybrid"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// Admit says which frames a port accepts on ingress (IEEE 802.1Q
// acceptable frame types). Priority-tagged frames (VID 0) count as untagged.
type Admit uint8

// Admit rules.
const (
	AdmitAll          Admit = iota // tagged and untagged
	AdmitTaggedOnly                // trunk without a native VLAN
	AdmitUntaggedOnly              // untagged and access ports
)

// Port is a port's 802.1Q model. Build it with Untagged, Access, Trunk or
// Hybrid; the zero value means "untagged on the switch's default VLAN" to
// the switch core.
type Port struct {
	Mode     Mode
	PVID     frame.VID     // VLAN of untagged ingress frames; 0: untagged frames are dropped
	Member   frame.VLANSet // VLANs the port belongs to (ingress and egress)
	Untagged frame.VLANSet // members that leave the port untagged; the rest leave tagged
	Admit    Admit
}

// Untagged is the default mode: every frame belongs to the switch's default
// VLAN and the port never sees a tag.
func Untagged(defaultVLAN frame.VID) (Port, error) {
	p, err := Access(defaultVLAN)
	p.Mode = ModeUntagged
	return p, err
}

// Access puts the port in one VLAN: untagged frames join it, tagged frames
// are dropped (even when tagged with the access VLAN), egress is untagged.
func Access(vid frame.VID) (Port, error) {
	if !vid.IsValid() {
		return Port{}, field.New("access VLAN", vid.String(), "a VLAN ID from 1 to 4094")
	}
	p := Port{Mode: ModeAccess, PVID: vid, Admit: AdmitUntaggedOnly}
	p.Member.Add(vid)
	p.Untagged.Add(vid)
	return p, nil
}

// Trunk carries the allowed VLANs tagged and, when native is not 0, the
// native VLAN untagged (and accepts it tagged too). Without a native VLAN,
// untagged frames are dropped.
func Trunk(allowed frame.VLANSet, native frame.VID) (Port, error) {
	var errs []error
	if allowed.Contains(0) || allowed.Contains(4095) {
		errs = append(errs, field.New("trunk allowed VLANs", allowed.String(), "VLAN IDs from 1 to 4094"))
	}
	if native != 0 && !native.IsValid() {
		errs = append(errs, field.New("trunk native VLAN", native.String(), "a VLAN ID from 1 to 4094, or none"))
	}
	if allowed.IsEmpty() && native == 0 {
		errs = append(errs, field.New("trunk allowed VLANs", "", "at least one VLAN, or a native VLAN"))
	}
	if len(errs) > 0 {
		return Port{}, errors.Join(errs...)
	}
	p := Port{Mode: ModeTrunk, Member: allowed, Admit: AdmitTaggedOnly}
	if native != 0 {
		p.PVID = native
		p.Member.Add(native)
		p.Untagged.Add(native)
		p.Admit = AdmitAll
	}
	return p, nil
}

// Hybrid gives the port a PVID for untagged ingress, a set of VLANs that
// leave untagged and a disjoint set that leave tagged; tagged ingress is
// accepted for any VLAN of either set.
func Hybrid(pvid frame.VID, untagged, tagged frame.VLANSet) (Port, error) {
	var errs []error
	if !pvid.IsValid() {
		errs = append(errs, field.New("hybrid PVID", pvid.String(), "a VLAN ID from 1 to 4094"))
	}
	for _, f := range []struct {
		name string
		set  *frame.VLANSet
	}{{"hybrid untagged VLANs", &untagged}, {"hybrid tagged VLANs", &tagged}} {
		if f.set.Contains(0) || f.set.Contains(4095) {
			errs = append(errs, field.New(f.name, f.set.String(), "VLAN IDs from 1 to 4094"))
		}
	}
	if both := untagged.Intersect(&tagged); !both.IsEmpty() {
		errs = append(errs, field.New("hybrid tagged VLANs", tagged.String(),
			fmt.Sprintf("no VLAN that is also untagged (%s is in both sets)", both.String())))
	}
	if pvid.IsValid() && !untagged.Contains(pvid) && !tagged.Contains(pvid) {
		errs = append(errs, field.New("hybrid PVID", pvid.String(),
			fmt.Sprintf("a VLAN of the untagged set (%s) or the tagged set (%s)", untagged.String(), tagged.String())))
	}
	if len(errs) > 0 {
		return Port{}, errors.Join(errs...)
	}
	return Port{Mode: ModeHybrid, PVID: pvid, Member: untagged.Union(&tagged), Untagged: untagged, Admit: AdmitAll}, nil
}

// IsZero reports whether p is the zero value (no mode chosen).
func (p *Port) IsZero() bool {
	return p.PVID == 0 && p.Member.IsEmpty() && p.Mode == ModeUntagged
}

// Tagged returns the VLANs that leave the port tagged.
func (p *Port) Tagged() frame.VLANSet { return p.Member.Difference(&p.Untagged) }

// String describes the port the way the user would have set it up, e.g.
// "access 10", "trunk 1-100 native 1", "hybrid pvid 10 untagged 10,20 tagged 30-40".
func (p Port) String() string {
	switch p.Mode {
	case ModeUntagged:
		return "untagged (VLAN " + p.PVID.String() + ")"
	case ModeAccess:
		return "access " + p.PVID.String()
	case ModeTrunk:
		s := "trunk " + p.Member.String() // the native VLAN included, as users write it
		if p.PVID != 0 {
			s += " native " + p.PVID.String()
		}
		return s
	default:
		t := p.Tagged()
		return fmt.Sprintf("hybrid pvid %d untagged %s tagged %s", p.PVID, p.Untagged.String(), t.String())
	}
}

// Verdict is the outcome of ingress classification.
type Verdict uint8

// Verdicts.
const (
	Accept             Verdict = iota
	UntaggedNotAllowed         // untagged (or priority-tagged) frame, no PVID or tagged-only
	BadTag                     // the reserved VID 4095
	TaggedOnAccess             // tagged frame on an untagged or access port (even with its own VLAN)
	NotMember                  // tagged with a VLAN the port is not a member of
)

// Ingress classifies a received frame into its VLAN. tagged is whether it
// carries an 802.1Q tag and vid that tag's VID; VID 0 (priority tag) counts
// as untagged.
func (p *Port) Ingress(tagged bool, vid frame.VID) (frame.VID, Verdict) {
	if !tagged || vid == 0 {
		if p.PVID == 0 || p.Admit == AdmitTaggedOnly {
			return 0, UntaggedNotAllowed
		}
		return p.PVID, Accept
	}
	switch {
	case vid == 4095:
		return 0, BadTag
	case p.Admit == AdmitUntaggedOnly:
		return 0, TaggedOnAccess
	case !p.Member.Contains(vid):
		return 0, NotMember
	}
	return vid, Accept
}
