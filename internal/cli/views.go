package cli

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/api"
)

func (a *app) fdbCmd() *cobra.Command {
	return &cobra.Command{Use: "fdb SWITCH", Short: "Show a switch's MAC table", Args: nArgs(1, "the switch's name"),
		RunE: func(c *cobra.Command, args []string) error {
			rows, err := a.client().FDB(args[0])
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(orEmpty(rows))
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "VLAN\tMAC\tPORT\tTYPE\tAGE")
			for _, r := range rows {
				vlan, kind, age := fmt.Sprint(r.VLAN), "learned", fmt.Sprintf("%.0fs", r.AgeSeconds)
				if r.VLAN == 0 {
					vlan = "any"
				}
				if r.Static {
					kind, age = "static", "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", vlan, r.MAC, r.Port, kind, age)
			}
			return tw.Flush()
		}}
}

func (a *app) statsCmd() *cobra.Command {
	return &cobra.Command{Use: "stats [SWITCH]", Short: "Show port counters", Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			sw := ""
			if len(args) == 1 {
				sw = args[0]
			}
			rows, err := a.client().Stats(sw)
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(orEmpty(rows))
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SWITCH\tPORT\tRX PKTS\tRX BYTES\tTX PKTS\tTX BYTES\tFLOODS\tDROPS")
			for _, r := range rows {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Switch, r.Port, r.RxPackets, r.RxBytes, r.TxPackets, r.TxBytes, r.Floods, drops(r.Drops))
			}
			return tw.Flush()
		}}
}

func drops(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, ",")
}

func (a *app) topologyCmd() *cobra.Command {
	return &cobra.Command{Use: "topology", Short: "Show switches with their uplink, host adapter and adapters", Args: nArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, _ []string) error {
			t, err := a.client().Topology()
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(t)
			}
			fmt.Fprint(a.out, RenderTopology(t))
			return nil
		}}
}

// RenderTopology draws the switch tree as text.
func RenderTopology(t api.Topology) string {
	var b strings.Builder
	if len(t.Switches) == 0 {
		b.WriteString("no switches\n")
	}
	for _, s := range t.Switches {
		state := ""
		if !s.Running {
			state = ", not running"
		}
		fmt.Fprintf(&b, "%s (%s, default VLAN %d%s)\n", s.Name, s.Type, s.DefaultVLAN, state)
		var lines []string
		if s.Uplink != nil {
			lines = append(lines, fmt.Sprintf("uplink %s  [%s]", s.Uplink.Name, s.Uplink.VLAN))
		}
		if s.HostAdapter != nil {
			lines = append(lines, fmt.Sprintf("host adapter %s  [%s]", s.HostAdapter.Name, s.HostAdapter.VLAN))
		}
		for _, p := range s.Adapters {
			lines = append(lines, fmt.Sprintf("%s  %s  %s  %s  [%s]", p.Name, p.MAC, p.Type, p.Attachment, p.VLAN))
		}
		for i, l := range lines {
			branch := "├── "
			if i == len(lines)-1 {
				branch = "└── "
			}
			b.WriteString(branch + l + "\n")
		}
	}
	return b.String()
}
