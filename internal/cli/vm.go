package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/config"
)

func (a *app) vmCmd() *cobra.Command {
	var notes string
	add := &cobra.Command{Use: "add NAME", Short: "Add a VM (a workload that gets network adapters)",
		Args: nArgs(1, "the VM's name"), RunE: func(c *cobra.Command, args []string) error {
			return a.result(a.client().AddVM(config.VM{Name: args[0], Notes: notes}))
		}}
	add.Flags().StringVar(&notes, "notes", "", "free text")
	var force bool
	rm := &cobra.Command{Use: "rm NAME [--force]", Short: "Remove a VM", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error { return a.result(a.client().RemoveVM(args[0], force)) }}
	rm.Flags().BoolVar(&force, "force", false, "also remove the VM's adapters")
	ls := &cobra.Command{Use: "ls", Short: "List VMs", Args: nArgs(0, "no arguments"), RunE: func(c *cobra.Command, _ []string) error {
		st, err := a.client().State()
		if err != nil {
			return err
		}
		if a.output == "json" {
			return a.json(orEmpty(st.Config.VMs))
		}
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tADAPTERS\tNOTES")
		for _, vm := range st.Config.VMs {
			n := 0
			for _, ad := range st.Config.Adapters {
				if ad.VM == vm.Name {
					n++
				}
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\n", vm.Name, n, dash(vm.Notes))
		}
		return tw.Flush()
	}}
	return group("vm", "VMs (workloads)", add, rm, ls)
}
