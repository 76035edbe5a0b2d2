package cli

import (
	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
)

type vlanFlags struct {
	untagged, trunk, tagged string
	access, native, pvid    string
	hybrid                  bool
	hostOf, uplinkOf        string
}

// parse turns the flags into a VLAN setting; bad numbers and sets are
// usage errors that name the flag and what is allowed.
func (f *vlanFlags) parse(c *cobra.Command) (config.VLAN, error) {
	ch := c.Flags().Changed
	modes := 0
	for _, m := range []bool{ch("untagged") && !f.hybrid, ch("access"), ch("trunk"), f.hybrid} {
		if m {
			modes++
		}
	}
	if modes != 1 {
		return config.VLAN{}, usagef("give exactly one mode: --untagged, --access VID, --trunk SET [--native VID], or --hybrid --pvid VID --untagged SET --tagged SET")
	}
	vid := func(flag, s string) (frame.VID, error) {
		v, err := frame.ParseVID(s)
		if err != nil {
			return 0, usagef("--%s: %v", flag, err)
		}
		return v, nil
	}
	set := func(flag, s string) (frame.VLANSet, error) {
		v, err := frame.ParseVLANSet(s)
		if err != nil {
			return v, usagef("--%s: %v", flag, err)
		}
		return v, nil
	}
	if ch("untagged") && !f.hybrid && f.untagged != "" {
		return config.VLAN{}, usagef("--untagged %q: --untagged takes no VLAN (it puts the port untagged on the switch's default VLAN); for VLAN %s untagged use --access %s, or --hybrid --pvid %s --untagged %s --tagged SET",
			f.untagged, f.untagged, f.untagged, f.untagged, f.untagged)
	}
	for _, fl := range []string{"pvid", "tagged"} {
		if ch(fl) && !f.hybrid {
			return config.VLAN{}, usagef("--%s goes with --hybrid", fl)
		}
	}
	if f.hybrid && (!ch("pvid") || !ch("untagged") || !ch("tagged")) {
		return config.VLAN{}, usagef("--hybrid needs --pvid VID, --untagged SET and --tagged SET (an empty set is \"\")")
	}
	var v config.VLAN
	var err error
	switch {
	case ch("access"):
		v.Mode = config.ModeAccess
		v.Access, err = vid("access", f.access)
	case ch("trunk"):
		v.Mode = config.ModeTrunk
		if v.Allowed, err = set("trunk", f.trunk); err == nil && ch("native") {
			v.Native, err = vid("native", f.native)
		}
	case f.hybrid:
		v.Mode = config.ModeHybrid
		if v.PVID, err = vid("pvid", f.pvid); err == nil {
			if v.Untagged, err = set("untagged", f.untagged); err == nil {
				v.Tagged, err = set("tagged", f.tagged)
			}
		}
	default:
		v.Mode = config.ModeUntagged
	}
	if err == nil && ch("native") && v.Mode != config.ModeTrunk {
		err = usagef("--native goes with --trunk")
	}
	return v, err
}

func (a *app) vlanCmd() *cobra.Command {
	var f vlanFlags
	c := &cobra.Command{
		Use:   "vlan (VM/NAME | --host SWITCH | --uplink SWITCH) MODE",
		Short: "Set a port's VLAN mode (Set-VMNetworkAdapterVlan)",
		Long: `Set the VLAN mode of an adapter, of a switch's host adapter (--host), or of an
external switch's uplink (--uplink):
  --untagged                                   the switch's default VLAN, untagged
  --access 10                                  one VLAN, untagged; tagged frames dropped
  --trunk 1-100 [--native 1]                   tagged VLANs, and an untagged native one
  --hybrid --pvid 10 --untagged 10,20 --tagged 30-40`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := f.parse(cmd)
			if err != nil {
				return err
			}
			targets := len(args)
			for _, s := range []string{f.hostOf, f.uplinkOf} {
				if s != "" {
					targets++
				}
			}
			if targets != 1 {
				return usagef("name exactly one port: VM/NAME, --host SWITCH or --uplink SWITCH")
			}
			if len(args) == 1 {
				ad, err := a.getAdapter(args[0])
				if err != nil {
					return err
				}
				ad.VLAN = v
				return a.result(a.client().SetAdapter(ad))
			}
			name := f.hostOf + f.uplinkOf
			s, err := a.client().Switch(name)
			if err != nil {
				return err
			}
			if f.hostOf != "" {
				s.HostVLAN = v
			} else {
				s.UplinkVLAN = v
			}
			return a.result(a.client().SetSwitch(s))
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.untagged, "untagged", "", "untagged mode; with --hybrid, the VLANs that leave untagged")
	fl.StringVar(&f.access, "access", "", "access mode in this VLAN")
	fl.StringVar(&f.trunk, "trunk", "", "trunk mode carrying these VLANs tagged")
	fl.StringVar(&f.native, "native", "", "with --trunk: the VLAN carried untagged")
	fl.BoolVar(&f.hybrid, "hybrid", false, "hybrid mode (needs --pvid, --untagged, --tagged)")
	fl.StringVar(&f.pvid, "pvid", "", "with --hybrid: the VLAN of untagged frames")
	fl.StringVar(&f.tagged, "tagged", "", "with --hybrid: the VLANs that leave tagged")
	fl.StringVar(&f.hostOf, "host", "", "the host adapter of this switch")
	fl.StringVar(&f.uplinkOf, "uplink", "", "the uplink of this external switch")
	return c
}
