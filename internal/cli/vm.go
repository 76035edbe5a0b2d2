package cli

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
)

// vmFlags are the settable fields of a VM.
type vmFlags struct {
	notes, kernel, initrd, appendLine, disk, netBoot string
	host                                             string
	memory, cpus                                     int
}

func (f *vmFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.notes, "notes", "", "free text")
	fl.IntVar(&f.memory, "memory", 0, "memory in MiB, for vm start (256 if not set)")
	fl.IntVar(&f.cpus, "cpus", 0, "vCPUs, for vm start (1 if not set)")
	fl.StringVar(&f.kernel, "kernel", "", "a kernel to boot directly")
	fl.StringVar(&f.initrd, "initrd", "", "an initrd for the kernel")
	fl.StringVar(&f.appendLine, "append", "", "the kernel command line")
	fl.StringVar(&f.disk, "disk", "", "a disk image to boot from")
	fl.StringVar(&f.netBoot, "network-boot", "", "boot from the network through this adapter (PXE)")
	fl.StringVar(&f.host, "host", "", "in a cluster: the host the VM and its adapters are on (the host asked, if not given)")
}

func (f *vmFlags) apply(c *cobra.Command, vm *config.VM) {
	ch := c.Flags().Changed
	for _, s := range []struct {
		flag string
		dst  *string
		val  string
	}{{"notes", &vm.Notes, f.notes}, {"kernel", &vm.Kernel, f.kernel}, {"initrd", &vm.Initrd, f.initrd},
		{"append", &vm.Append, f.appendLine}, {"disk", &vm.Disk, f.disk}, {"network-boot", &vm.NetworkBoot, f.netBoot},
		{"host", &vm.Host, f.host}} {
		if ch(s.flag) {
			*s.dst = s.val
		}
	}
	if ch("memory") {
		vm.Memory = f.memory
	}
	if ch("cpus") {
		vm.CPUs = f.cpus
	}
}

func (a *app) vmCmd() *cobra.Command {
	var af vmFlags
	add := &cobra.Command{Use: "add NAME [--memory MiB --cpus N --kernel PATH --initrd PATH --append LINE | --disk PATH]",
		Short: "Add a VM (a workload that gets network adapters; vswitchd can also run it)",
		Args:  nArgs(1, "the VM's name"), RunE: func(c *cobra.Command, args []string) error {
			vm := config.VM{Name: args[0]}
			af.apply(c, &vm)
			return a.result(a.client().AddVM(vm))
		}}
	af.register(add)
	var sf vmFlags
	set := &cobra.Command{Use: "set NAME [flags]", Short: "Change a VM's settings", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error {
			st, err := a.client().State()
			if err != nil {
				return err
			}
			vm := st.Config.VM(args[0])
			if vm == nil {
				return &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("VM %q: not found", args[0])}
			}
			sf.apply(c, vm)
			return a.result(a.client().SetVM(*vm))
		}}
	sf.register(set)
	var force bool
	rm := &cobra.Command{Use: "rm NAME [--force]", Short: "Remove a VM", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error { return a.result(a.client().RemoveVM(args[0], force)) }}
	rm.Flags().BoolVar(&force, "force", false, "also remove the VM's adapters")
	start := &cobra.Command{Use: "start NAME", Short: "Run a VM with QEMU (Start-VM)", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error { return a.status(a.client().StartVM(args[0])) }}
	stop := &cobra.Command{Use: "stop NAME", Short: "Stop a running VM (Stop-VM)", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error { return a.status(a.client().StopVM(args[0])) }}
	console := &cobra.Command{Use: "console NAME", Short: "Print the tail of a VM's serial console", Args: nArgs(1, "the VM's name"),
		RunE: func(c *cobra.Command, args []string) error {
			out, err := a.client().VMConsole(args[0])
			if err == nil {
				fmt.Fprint(a.out, out)
			}
			return err
		}}
	var lsHost string
	ls := &cobra.Command{Use: "ls [--host NAME]", Short: "List VMs (Get-VM)", Args: nArgs(0, "no arguments"), RunE: func(c *cobra.Command, _ []string) error {
		return a.listVMs(lsHost)
	}}
	ls.Flags().StringVar(&lsHost, "host", "", "in a cluster: only the VMs on this host")
	var to string
	var check bool
	move := &cobra.Command{Use: "move NAME --to HOST [--check]", Short: "Move a VM's network to another host of the cluster (the aid a live migration needs)",
		Args: nArgs(1, "the VM's name"), RunE: func(c *cobra.Command, args []string) error {
			if to == "" {
				return usagef("--to is required: the host the VM goes to")
			}
			r, err := a.client().MoveVM(args[0], api.Move{To: to, Check: check})
			if err != nil {
				return err
			}
			if a.output == "json" {
				return a.json(r)
			}
			switch {
			case check && len(r.Blockers) == 0:
				fmt.Fprintf(a.out, "nothing blocks moving VM %s from %s to %s\n", r.VM, r.From, r.To)
			case check:
				fmt.Fprintf(a.out, "VM %s cannot move from %s to %s:\n", r.VM, r.From, r.To)
				for _, b := range r.Blockers {
					fmt.Fprintf(a.out, "  %s\n", b)
				}
				return errBlocked
			default:
				fmt.Fprintf(a.out, "VM %s moved from %s to %s\n", r.VM, r.From, r.To)
				if r.Result != nil {
					for _, ch := range r.Result.Changes {
						fmt.Fprintf(a.out, "  %s\n", ch)
					}
				}
			}
			return nil
		}}
	move.Flags().StringVar(&to, "to", "", "the host the VM goes to")
	move.Flags().BoolVar(&check, "check", false, "change nothing: say what would block the move")
	return group("vm", "VMs (workloads)", add, set, rm, start, stop, console, ls, move)
}

// errBlocked: move --check found something in the way (printed already).
var errBlocked = errors.New("the move is blocked")

func (a *app) status(st api.VMStatus, err error) error {
	if err != nil {
		return err
	}
	if a.output == "json" {
		return a.json(st)
	}
	switch st.State {
	case "running":
		fmt.Fprintf(a.out, "VM %s running, PID %d, %s\n", st.Name, st.PID, st.Note)
	default:
		fmt.Fprintf(a.out, "VM %s %s (exit code %d)\n", st.Name, st.State, st.ExitCode)
	}
	return nil
}

func (a *app) listVMs(host string) error {
	st, err := a.client().State()
	if err != nil {
		return err
	}
	if host != "" {
		st.Config = *st.Config.ForHost(host)
	}
	var rows []api.VMStatus
	for _, vm := range st.Config.VMs {
		s, err := a.client().VMStatus(vm.Name)
		if err != nil {
			return err
		}
		rows = append(rows, s)
	}
	if a.output == "json" {
		return a.json(orEmpty(rows))
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tADAPTERS\tMEMORY\tBOOT\tNOTES")
	for i, vm := range st.Config.VMs {
		n := 0
		for _, ad := range st.Config.Adapters {
			if ad.VM == vm.Name {
				n++
			}
		}
		state := rows[i].State
		if state == "exited" {
			state = fmt.Sprintf("exited (%d)", rows[i].ExitCode)
		}
		boot := "-"
		switch {
		case vm.NetworkBoot != "":
			boot = "network via " + vm.NetworkBoot
		case vm.Kernel != "":
			boot = "kernel"
		case vm.Disk != "":
			boot = "disk"
		}
		mem := "-"
		if boot != "-" {
			m := vm.Memory
			if m == 0 {
				m = 256
			}
			mem = fmt.Sprintf("%d MiB", m)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", vm.Name, state, n, mem, boot, dash(vm.Notes))
	}
	return tw.Flush()
}
