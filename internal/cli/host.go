package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/frame"
)

func (a *app) hostCmd() *cobra.Command {
	var min, max string
	set := &cobra.Command{Use: "set --mac-min MAC --mac-max MAC", Short: "Set the host's MAC address pool (Set-VMHost -MacAddressMinimum/-Maximum)",
		Args: nArgs(0, "no arguments"), RunE: func(c *cobra.Command, _ []string) error {
			st, err := a.client().State()
			if err != nil {
				return err
			}
			h := st.Config.Host
			for _, f := range []struct {
				flag, val string
				dst       *frame.MAC
			}{{"mac-min", min, &h.MACMin}, {"mac-max", max, &h.MACMax}} {
				if !c.Flags().Changed(f.flag) {
					continue
				}
				m, err := frame.ParseMAC(f.val)
				if err != nil {
					return usagef("--%s: %v", f.flag, err)
				}
				*f.dst = m
			}
			return a.result(a.client().SetHost(h))
		}}
	set.Flags().StringVar(&min, "mac-min", "", "the pool's lowest address")
	set.Flags().StringVar(&max, "mac-max", "", "the pool's highest address")
	show := &cobra.Command{Use: "show", Short: "Show the host's settings and pool use", Args: nArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, _ []string) error {
			st, err := a.client().State()
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(st.Config.Host)
			}
			used, size := st.Config.PoolUsage()
			fmt.Fprintf(a.out, "MAC pool: %s - %s (%d of %d in use)\n", st.Config.Host.MACMin, st.Config.Host.MACMax, used, size)
			fmt.Fprintf(a.out, "revision: %d\n", st.Revision)
			return nil
		}}
	ls := &cobra.Command{Use: "ls", Short: "List the hosts of the cluster: VTEP, version, last seen, up or down", Args: nArgs(0, "no arguments"),
		RunE: func(c *cobra.Command, _ []string) error {
			hosts, err := a.client().Hosts()
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(orEmpty(hosts))
			}
			if len(hosts) == 0 {
				fmt.Fprintln(a.out, "a single host: vswitchd runs without --etcd")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVTEP\tVERSION\tSTARTED\tLAST SEEN\tSTATE")
			for _, h := range hosts {
				state := "down"
				if h.Up {
					state = "up"
				}
				if h.Self {
					state += " (this host)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, h.VTEP, h.Version, h.Started, h.LastSeen, state)
			}
			return tw.Flush()
		}}
	return group("host", "The host (management OS) settings; the hosts of a cluster", set, show, ls)
}
