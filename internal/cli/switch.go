package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
)

// switchFlags are the settable fields of a switch.
type switchFlags struct {
	typ, uplink, notes string
	datapath           string
	mgmtOS             bool
	defaultVLAN        uint16
	ageing             time.Duration
	tableSize          int
	host, hosts        string
	remoteVTEPs        string
	span               bool
	vni                uint32
}

func (f *switchFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.typ, "type", "", "external, internal or private")
	fl.StringVar(&f.uplink, "uplink", "", "the physical NIC of an external switch")
	fl.BoolVar(&f.mgmtOS, "allow-management-os", true, "give the host an adapter on an external switch")
	fl.Uint16Var(&f.defaultVLAN, "default-vlan", 0, "VLAN of untagged ports (1 if not set)")
	fl.DurationVar(&f.ageing, "mac-ageing", 0, "MAC ageing time (300s if not set)")
	fl.IntVar(&f.tableSize, "table-size", 0, "learned MAC entries at most (65536 if not set)")
	fl.StringVar(&f.notes, "notes", "", "free text")
	fl.StringVar(&f.datapath, "datapath", "", "what forwards its frames: auto (the default: kernel where the host has it, else userspace), "+
		"kernel (eBPF programs on its ports) or userspace (vswitchd's threads)")
	fl.StringVar(&f.host, "host", "", "in a cluster: the host a switch that does not span is on (the host asked, if not given)")
	fl.BoolVar(&f.span, "span", false, "in a cluster: the switch is on several hosts (--hosts, or all), joined by VXLAN")
	fl.StringVar(&f.hosts, "hosts", "", "the hosts a spanning switch is on, comma-separated (every host if not given)")
	fl.StringVar(&f.remoteVTEPs, "remote-vteps", "", "tunnel endpoints outside the cluster (plain Linux VXLAN hosts) a spanning switch also floods to, comma-separated")
	fl.Uint32Var(&f.vni, "vni", 0, "a spanning switch's VXLAN network identifier, 1-16777215 (allocated if not given)")
}

// apply copies the flags the user gave onto s.
func (f *switchFlags) apply(c *cobra.Command, s *config.Switch) {
	ch := c.Flags().Changed
	if ch("type") {
		s.Type = config.SwitchType(f.typ)
	}
	if ch("uplink") {
		s.Uplink = f.uplink
	}
	if ch("allow-management-os") {
		v := f.mgmtOS
		s.AllowManagementOS = &v
	}
	if ch("default-vlan") {
		s.DefaultVLAN = frame.VID(f.defaultVLAN)
	}
	if ch("mac-ageing") {
		s.MACAgeing = config.Duration(f.ageing)
	}
	if ch("table-size") {
		s.TableSize = f.tableSize
	}
	if ch("notes") {
		s.Notes = f.notes
	}
	if ch("datapath") {
		s.Datapath = config.Datapath(f.datapath)
	}
	if ch("host") {
		s.Host = f.host
	}
	if ch("span") {
		s.Span = f.span
	}
	if ch("hosts") {
		s.Hosts = f.hosts
	}
	if ch("vni") {
		s.VNI = f.vni
	}
	if ch("remote-vteps") {
		s.RemoteVTEPs = f.remoteVTEPs
	}
}

func (a *app) switchCmd() *cobra.Command {
	var f switchFlags
	add := &cobra.Command{Use: "add NAME --type external|internal|private [--uplink NIC]", Short: "Add a switch (New-VMSwitch)",
		Args: nArgs(1, "the switch's name"), RunE: func(c *cobra.Command, args []string) error {
			if !c.Flags().Changed("type") {
				return usagef("--type is required: external, internal or private")
			}
			s := config.Switch{Name: args[0]}
			f.apply(c, &s)
			return a.result(a.client().AddSwitch(s))
		}}
	f.register(add)
	var sf switchFlags
	set := &cobra.Command{Use: "set NAME [flags]", Short: "Change a switch, its type too (Set-VMSwitch)",
		Args: nArgs(1, "the switch's name"), RunE: func(c *cobra.Command, args []string) error {
			s, err := a.client().Switch(args[0])
			if err != nil {
				return err
			}
			sf.apply(c, &s)
			if s.Type != config.External {
				s.Uplink, s.AllowManagementOS, s.UplinkVLAN = "", nil, config.VLAN{}
			}
			return a.result(a.client().SetSwitch(s))
		}}
	sf.register(set)
	var force bool
	rm := &cobra.Command{Use: "rm NAME [--force]", Short: "Remove a switch (Remove-VMSwitch)",
		Args: nArgs(1, "the switch's name"), RunE: func(c *cobra.Command, args []string) error {
			return a.result(a.client().RemoveSwitch(args[0], force))
		}}
	rm.Flags().BoolVar(&force, "force", false, "also remove the switch's adapters")
	var lsHost string
	ls := &cobra.Command{Use: "ls [--host NAME]", Short: "List switches (Get-VMSwitch)", Args: nArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, _ []string) error { return a.listSwitches(lsHost) }}
	ls.Flags().StringVar(&lsHost, "host", "", "in a cluster: only the switches on this host")
	show := &cobra.Command{Use: "show NAME", Short: "Show one switch", Args: nArgs(1, "the switch's name"),
		RunE: func(c *cobra.Command, args []string) error { return a.showSwitch(args[0]) }}
	return group("switch", "Virtual switches", add, set, rm, ls, show)
}

func (a *app) listSwitches(host string) error {
	st, err := a.client().State()
	if err != nil {
		return err
	}
	if host != "" {
		st.Config = *st.Config.ForHost(host)
	}
	if a.output == "json" {
		return a.json(orEmpty(st.Config.Switches))
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	cluster := inCluster(&st.Config)
	head := "NAME\tTYPE\tUPLINK\tHOST ADAPTER\tDEFAULT VLAN\tADAPTERS\tDATAPATH"
	if cluster {
		head += "\tON\tVNI"
	}
	fmt.Fprintln(tw, head)
	for _, s := range st.Config.Switches {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s", s.Name, s.Type, dash(s.Uplink), yesNo(s.ManagementOS()),
			s.VLANOrDefault(), len(st.Config.AdaptersOn(s.Name)), datapath(s.Datapath, st.Datapaths[s.Name]))
		if cluster {
			fmt.Fprintf(tw, "\t%s\t%s", placement(&s), dash(vniText(s.VNI)))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func (a *app) showSwitch(name string) error {
	s, err := a.client().Switch(name)
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.json(s)
	}
	var runs string
	if st, err := a.client().State(); err == nil {
		runs = st.Datapaths[s.Name]
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	rows := [][2]string{{"name", s.Name}, {"type", string(s.Type)}, {"uplink", dash(s.Uplink)},
		{"host adapter", yesNo(s.ManagementOS())}, {"default VLAN", s.VLANOrDefault().String()},
		{"host adapter VLAN", s.HostVLAN.String()}, {"MAC ageing", ageing(s)}, {"table size", tableSize(s)}, {"datapath", datapath(s.Datapath, runs)},
		{"notes", dash(s.Notes)}}
	if s.Type == config.External {
		rows = append(rows, [2]string{"uplink VLAN", uplinkVLAN(&s)})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func uplinkVLAN(s *config.Switch) string {
	if s.UplinkVLAN == (config.VLAN{}) {
		return "trunk 1-4094 native " + s.VLANOrDefault().String()
	}
	return s.UplinkVLAN.String()
}

func ageing(s config.Switch) string {
	if s.MACAgeing == 0 {
		return "300s"
	}
	return time.Duration(s.MACAgeing).String()
}

func tableSize(s config.Switch) string {
	if s.TableSize == 0 {
		return "65536"
	}
	return fmt.Sprint(s.TableSize)
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// datapath names what a switch runs on (runs: as the answering host
// resolved it, "" for a switch of another host) and its setting when that
// is auto ("" is the userspace core).
func datapath(d config.Datapath, runs string) string {
	switch {
	case d == config.Auto && runs != "":
		return runs + " (auto)"
	case d == "":
		return string(config.Userspace)
	}
	return string(d)
}

// inCluster reports whether the state places anything on a cluster host.
func inCluster(c *config.Config) bool {
	for _, s := range c.Switches {
		if s.Span || s.Host != "" {
			return true
		}
	}
	for _, vm := range c.VMs {
		if vm.Host != "" {
			return true
		}
	}
	return false
}

// placement says which hosts a switch is on.
func placement(s *config.Switch) string {
	switch {
	case s.Span && s.Hosts == "":
		return "every host (spans)"
	case s.Span:
		return s.Hosts + " (spans)"
	}
	return dash(s.Host)
}

func vniText(v uint32) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprint(v)
}
