package config

import (
	"fmt"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/vlan"
)

// VLANMode is how the user describes a port's VLANs.
type VLANMode string

// VLAN modes (DESIGN.md's table).
const (
	ModeUntagged VLANMode = "untagged" // the switch's default VLAN, untagged (also "")
	ModeAccess   VLANMode = "access"
	ModeTrunk    VLANMode = "trunk"
	ModeHybrid   VLANMode = "hybrid"
)

// VLAN is a port's VLAN setting as the user gives it.
type VLAN struct {
	Mode     VLANMode      `json:"mode,omitempty"`
	Access   frame.VID     `json:"access,omitempty"`  // access
	Allowed  frame.VLANSet `json:"allowed,omitzero"`  // trunk: VLANs carried tagged
	Native   frame.VID     `json:"native,omitempty"`  // trunk: VLAN carried untagged; 0 none
	PVID     frame.VID     `json:"pvid,omitempty"`    // hybrid: VLAN of untagged ingress
	Untagged frame.VLANSet `json:"untagged,omitzero"` // hybrid: VLANs that leave untagged
	Tagged   frame.VLANSet `json:"tagged,omitzero"`   // hybrid: VLANs that leave tagged
}

// Port builds the 802.1Q model; defaultVLAN is the switch's.
func (v *VLAN) Port(defaultVLAN frame.VID) (vlan.Port, error) {
	switch v.Mode {
	case "", ModeUntagged:
		return vlan.Untagged(defaultVLAN)
	case ModeAccess:
		return vlan.Access(v.Access)
	case ModeTrunk:
		return vlan.Trunk(v.Allowed, v.Native)
	case ModeHybrid:
		return vlan.Hybrid(v.PVID, v.Untagged, v.Tagged)
	}
	return vlan.Port{}, field.New("VLAN mode", string(v.Mode), "untagged, access, trunk or hybrid")
}

// String describes the setting in the user's words, e.g. "access 10",
// "trunk 1-100 native 1".
func (v *VLAN) String() string {
	switch v.Mode {
	case "", ModeUntagged:
		return "untagged"
	case ModeAccess:
		return "access " + v.Access.String()
	case ModeTrunk:
		s := "trunk " + v.Allowed.String()
		if v.Native != 0 {
			s += " native " + v.Native.String()
		}
		return s
	case ModeHybrid:
		return fmt.Sprintf("hybrid pvid %d untagged %s tagged %s", v.PVID, v.Untagged.String(), v.Tagged.String())
	}
	return string(v.Mode)
}

// validate adds the setting's problems to l, each field prefixed by path.
func (v *VLAN) validate(path string, defaultVLAN frame.VID, l *field.List) {
	notFor := func(name string, set bool, mode VLANMode) {
		if set && v.Mode != mode {
			mode := string(mode)
			l.Add(path+"."+name, "set", "only with mode "+mode)
		}
	}
	notFor("access", v.Access != 0, ModeAccess)
	notFor("allowed", !v.Allowed.IsEmpty(), ModeTrunk)
	notFor("native", v.Native != 0, ModeTrunk)
	notFor("pvid", v.PVID != 0, ModeHybrid)
	notFor("untagged", !v.Untagged.IsEmpty(), ModeHybrid)
	notFor("tagged", !v.Tagged.IsEmpty(), ModeHybrid)
	if _, err := v.Port(defaultVLAN); err != nil {
		for _, e := range field.All(err) {
			l.Add(path+"."+vlanKeys[e.Field], e.Value, e.Allowed)
		}
	}
}

// vlanKeys are the JSON keys of the settings the 802.1Q model's errors
// name, so that an error names the field as the API and the config file
// spell it (adapters[web/eth0].vlan.native).
var vlanKeys = map[string]string{
	"access VLAN": "access", "trunk allowed VLANs": "allowed", "trunk native VLAN": "native",
	"hybrid PVID": "pvid", "VLAN mode": "mode", "hybrid untagged VLANs": "untagged", "hybrid tagged VLANs": "tagged",
}

// UplinkPort is an external switch's uplink's 802.1Q model: as set, or a
// trunk of every VLAN with the default VLAN native (untagged VMs leave the
// wire untagged, as on Hyper-V).
func (s *Switch) UplinkPort() (vlan.Port, error) {
	if s.UplinkVLAN != (VLAN{}) {
		return s.UplinkVLAN.Port(s.VLANOrDefault())
	}
	return vlan.Trunk(frame.MustParseVLANSet("1-4094"), s.VLANOrDefault())
}
