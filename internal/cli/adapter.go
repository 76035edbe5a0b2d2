package cli

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/qemuargs"
)

// adapterFlags are the settable fields of an adapter.
type adapterFlags struct {
	sw, mac, typ, netns, device, tap, socket string
	qemuStream, qemuDgram, guard, dynamic    bool
	macLimit                                 int
}

func (f *adapterFlags) register(c *cobra.Command, forAdd bool) {
	fl := c.Flags()
	fl.StringVar(&f.sw, "switch", "", "the switch to connect to")
	fl.StringVar(&f.mac, "mac", "", "a static MAC address (default: dynamic, from the host's pool)")
	fl.StringVar(&f.typ, "type", "", "synthetic (virtio-net, the default) or legacy (DEC 21140)")
	fl.BoolVar(&f.guard, "spoof-guard", true, "drop frames whose source is not the adapter's MAC")
	fl.IntVar(&f.macLimit, "mac-limit", 0, "learn at most this many addresses behind the adapter (with --spoof-guard=false); 0: no limit of its own")
	if !forAdd {
		fl.BoolVar(&f.dynamic, "dynamic-mac", false, "take a MAC from the host's pool instead of the static one")
		return
	}
	fl.StringVar(&f.netns, "netns", "", "attach: a TAP inside this network namespace (name, path or PID)")
	fl.StringVar(&f.device, "device", "", "with --netns: the interface name inside (eth0)")
	fl.StringVar(&f.tap, "tap", "", "attach: a TAP device that QEMU or libvirt opens")
	fl.BoolVar(&f.qemuStream, "qemu-stream", false, "attach: a unix socket for QEMU -netdev stream")
	fl.BoolVar(&f.qemuDgram, "qemu-dgram", false, "attach: a unix socket for QEMU -netdev dgram")
	fl.StringVar(&f.socket, "socket-path", "", "with --qemu-*: the socket (default /run/vswitch/VM+NAME.sock)")
}

// apply copies the flags the user gave onto ad.
func (f *adapterFlags) apply(c *cobra.Command, ad *config.Adapter) error {
	ch := c.Flags().Changed
	if ch("switch") {
		ad.Switch = f.sw
	}
	if ch("mac") {
		m, err := frame.ParseMAC(f.mac)
		if err != nil {
			return usagef("--mac: %v", err)
		}
		ad.MAC, ad.DynamicMAC = m, false
	}
	if f.dynamic {
		ad.MAC, ad.DynamicMAC = frame.MAC{}, true
	}
	if ch("type") {
		ad.Type = config.AdapterType(f.typ)
	}
	if ch("spoof-guard") {
		g := f.guard
		ad.MACSpoofGuard = &g
	}
	if ch("mac-limit") {
		ad.MACLimit = f.macLimit
	}
	return nil
}

// defaultTAP names the TAP of an adapter given no attachment: "vst" and 8
// hex digits of a hash of VM/NAME, within Linux's 15-byte interface names.
func defaultTAP(vm, name string) string {
	h := sha256.Sum256([]byte(vm + "/" + name))
	return fmt.Sprintf("vst%x", h[:4])
}

func (f *adapterFlags) attachment(vm, name string) (config.Attachment, error) {
	var kinds []config.Attachment
	if f.netns != "" {
		kinds = append(kinds, config.Attachment{Kind: config.AttachNetns, Namespace: f.netns, Device: f.device})
	}
	if f.tap != "" {
		kinds = append(kinds, config.Attachment{Kind: config.AttachTAP, Device: f.tap})
	}
	if f.qemuStream {
		kinds = append(kinds, config.Attachment{Kind: config.AttachQEMUStream, Socket: f.socket})
	}
	if f.qemuDgram {
		kinds = append(kinds, config.Attachment{Kind: config.AttachQEMUDgram, Socket: f.socket})
	}
	switch len(kinds) {
	case 0: // a TAP that QEMU or libvirt opens, as on Hyper-V a VM's NIC is the VM's
		return config.Attachment{Kind: config.AttachTAP, Device: defaultTAP(vm, name)}, nil
	case 1:
		return kinds[0], nil
	}
	return config.Attachment{}, usagef("give at most one of --netns, --tap, --qemu-stream, --qemu-dgram (got %d)", len(kinds))
}

func (a *app) adapterCmd() *cobra.Command {
	var af adapterFlags
	add := &cobra.Command{Use: "add VM/NAME --switch SWITCH [--netns NS | --tap DEV | --qemu-stream | --qemu-dgram] (default: a TAP)",
		Short: "Add a network adapter to a VM (Add-VMNetworkAdapter)", Args: nArgs(1, "the adapter as VM/NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			vm, name, err := adapterID(args[0])
			if err != nil {
				return err
			}
			ad := config.Adapter{VM: vm, Name: name, DynamicMAC: true}
			if err := af.apply(c, &ad); err != nil {
				return err
			}
			if ad.Attachment, err = af.attachment(vm, name); err != nil {
				return err
			}
			r, err := a.client().AddAdapter(ad)
			if err == nil && r.Adapter != nil && a.output != "json" {
				fmt.Fprintf(a.out, "adapter %s MAC %s\n", r.Adapter.ID(), r.Adapter.MAC)
			}
			return a.result(r, err)
		}}
	af.register(add, true)
	var sf adapterFlags
	set := &cobra.Command{Use: "set VM/NAME [flags]", Short: "Change an adapter (Set-VMNetworkAdapter)", Args: nArgs(1, "the adapter as VM/NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			ad, err := a.getAdapter(args[0])
			if err != nil {
				return err
			}
			if err := sf.apply(c, &ad); err != nil {
				return err
			}
			return a.result(a.client().SetAdapter(ad))
		}}
	sf.register(set, false)
	rm := &cobra.Command{Use: "rm VM/NAME", Short: "Remove an adapter; its MAC returns to the pool", Args: nArgs(1, "the adapter as VM/NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			vm, name, err := adapterID(args[0])
			if err != nil {
				return err
			}
			return a.result(a.client().RemoveAdapter(vm, name))
		}}
	var lsHost string
	ls := &cobra.Command{Use: "ls [VM] [--host NAME]", Short: "List adapters (Get-VMNetworkAdapter)", Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return a.listAdapters(args, lsHost) }}
	ls.Flags().StringVar(&lsHost, "host", "", "in a cluster: only the adapters of VMs on this host")
	imp := &cobra.Command{Use: "import FILE", Short: "Add the adapters of a JSON array (as adapter ls -o json prints; - for stdin) in one write: all or none",
		Args: nArgs(1, "the file of adapters, or - for stdin"),
		RunE: func(c *cobra.Command, args []string) error {
			as, err := readAdapters(args[0])
			if err != nil {
				return err
			}
			r, err := a.client().AddAdapters(as)
			if err == nil && a.output != "json" {
				for _, ad := range r.Adapters {
					fmt.Fprintf(a.out, "adapter %s MAC %s\n", ad.ID(), ad.MAC)
				}
			}
			return a.result(r, err)
		}}
	return group("adapter", "VM network adapters", add, set, rm, ls, imp, a.vlanCmd(), a.qemuArgsCmd())
}

// readAdapters reads a JSON array of adapters from a file ("-": stdin).
func readAdapters(name string) ([]config.Adapter, error) {
	r := io.Reader(os.Stdin)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usagef("%v", err)
		}
		defer f.Close()
		r = f
	}
	var as []config.Adapter
	if err := config.Decode(r, &as); err != nil {
		return nil, usagef("%s: %v (want a JSON array of adapters, as adapter ls -o json prints)", name, err)
	}
	return as, nil
}

func (a *app) getAdapter(id string) (config.Adapter, error) {
	vm, name, err := adapterID(id)
	if err != nil {
		return config.Adapter{}, err
	}
	return a.client().Adapter(vm, name)
}

func (a *app) listAdapters(args []string, host string) error {
	st, err := a.client().State()
	if err != nil {
		return err
	}
	if host != "" {
		st.Config = *st.Config.ForHost(host)
	}
	var ads []config.Adapter
	for _, ad := range st.Config.Adapters {
		if len(args) == 0 || ad.VM == args[0] {
			ads = append(ads, ad)
		}
	}
	if a.output == "json" {
		return a.json(orEmpty(ads))
	}
	states, err := a.client().OnHost(host).PortStates() // a port's state is its host's
	if err != nil {
		return err
	}
	state := map[string]api.PortState{}
	for _, ps := range states {
		state[ps.Port] = ps
	}
	tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADAPTER\tSWITCH\tMAC\tTYPE\tVLAN\tATTACHMENT\tSTATE")
	var why []string
	for _, ad := range ads {
		mac := ad.MAC.String()
		if ad.DynamicMAC {
			mac += " (dynamic)"
		}
		ps := state[ad.ID()]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ad.ID(), ad.Switch, mac, ad.TypeOrDefault(), ad.VLAN.String(), attachment(ad.Attachment), dash(ps.State))
		if ps.Reason != "" {
			why = append(why, fmt.Sprintf("%s %s: %s", ad.ID(), ps.State, ps.Reason))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, w := range why {
		fmt.Fprintln(a.out, w)
	}
	return nil
}

func attachment(t config.Attachment) string {
	switch t.Kind {
	case config.AttachNetns:
		return "netns " + t.Namespace
	case config.AttachTAP:
		return "tap " + t.Device
	}
	return string(t.Kind) + " " + dash(t.Socket)
}

func (a *app) qemuArgsCmd() *cobra.Command {
	var libvirt, pxe bool
	c := &cobra.Command{Use: "qemu-args VM/NAME [--libvirt] [--pxe]",
		Short: "Print the QEMU -netdev/-device arguments (or a libvirt <interface>) for an adapter",
		Args:  nArgs(1, "the adapter as VM/NAME"),
		RunE: func(c *cobra.Command, args []string) error {
			ad, err := a.getAdapter(args[0])
			if err != nil {
				return err
			}
			if libvirt {
				x, err := qemuargs.Libvirt(ad)
				if err != nil {
					return usageError{err}
				}
				fmt.Fprint(a.out, x)
				return nil
			}
			qa, err := qemuargs.Args(ad, ad.SocketPath(), pxe)
			if err != nil {
				return usageError{err}
			}
			if a.output == "json" {
				return a.json(qa)
			}
			fmt.Fprintln(a.out, strings.Join(qa, " "))
			if ad.Attachment.Kind == config.AttachQEMUStream {
				fmt.Fprintf(a.errOut, "note: QEMU's -netdev stream client does not reconnect: start QEMU once vswitchd listens on %s, and again after vswitchd restarts\n", ad.SocketPath())
			}
			return nil
		}}
	c.Flags().BoolVar(&libvirt, "libvirt", false, "print a libvirt <interface> element instead (tap attachments)")
	c.Flags().BoolVar(&pxe, "pxe", false, "keep the NIC's option ROM, to boot from the network")
	return c
}
