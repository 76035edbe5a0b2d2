package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
)

// Limits of names and values (DESIGN.md).
const (
	maxIfName    = 15 // a switch name is its host adapter's interface name
	maxName      = 64 // VM and adapter names
	maxTableSize = 1 << 24
	minAgeing    = time.Second
	maxAgeing    = 24 * time.Hour
)

func nameOK(s string, max int) bool {
	if len(s) == 0 || len(s) > max || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

const (
	ifNameRule = "1 to 15 of the characters A-Z a-z 0-9 _ . - (it names a Linux interface)"
	nameRule   = "1 to 64 of the characters A-Z a-z 0-9 _ . -"
)

// Validate checks the whole state and returns every problem it finds as
// *field.Error values (see field.All), or nil.
func (c *Config) Validate() error {
	var l field.List
	c.validateHost(&l)
	switches := c.validateSwitches(&l)
	vms := map[string]bool{}
	for i, vm := range c.VMs {
		path := fmt.Sprintf("vms[%d].name", i)
		switch {
		case !nameOK(vm.Name, maxName):
			l.Add(path, vm.Name, nameRule)
		case vms[vm.Name]:
			l.Add(path, vm.Name, "a name no other VM has")
		}
		vms[vm.Name] = true
		c.validateVMHardware(&vm, &l)
	}
	c.validateAdapters(&l, switches, vms)
	c.validateResources(&l)
	return l.Err()
}

// maxSocketPath is the longest unix socket path (sun_path less its NUL);
// a dgram adapter's QEMU end adds ".qemu" to it.
const maxSocketPath = 107

// validateResources checks that no two objects claim one host resource:
// an interface name in the host's namespace (host adapters, uplinks, TAPs
// of tap adapters), an interface in a VM's namespace, a socket path.
func (c *Config) validateResources(l *field.List) {
	host := map[string]string{} // interface name → who has it
	for _, s := range c.Switches {
		if s.ManagementOS() && nameOK(s.Name, maxIfName) {
			host[s.Name] = "the host adapter of switch " + s.Name
		}
	}
	for _, s := range c.Switches {
		if s.Type != External || s.Uplink == "" {
			continue
		}
		if who := host[s.Uplink]; who != "" {
			l.Add("switches["+s.Name+"].uplink", s.Uplink, "a NIC that is not an interface of vswitch ("+who+")")
			continue
		}
		host[s.Uplink] = "the uplink of switch " + s.Name
	}
	inNS, sockets := map[string]string{}, map[string]string{}
	for i := range c.Adapters {
		a := &c.Adapters[i]
		p := fmt.Sprintf("adapters[%s].attachment", a.ID())
		switch a.Attachment.Kind {
		case AttachTAP:
			if who := host[a.Attachment.Device]; who != "" {
				l.Add(p+".device", a.Attachment.Device, "a name no other interface of the host has ("+who+" has it)")
			}
			host[a.Attachment.Device] = "the TAP of adapter " + a.ID()
		case AttachNetns:
			dev := a.Attachment.Device
			if dev == "" {
				dev = "eth0"
			}
			k := namespacePath(a.Attachment.Namespace) + "\x00" + dev
			if who := inNS[k]; who != "" {
				l.Add(p+".device", dev, "a name no other adapter has in namespace "+a.Attachment.Namespace+" ("+who+" has it)")
			}
			inNS[k] = "adapter " + a.ID()
		case AttachQEMUStream, AttachQEMUDgram:
			sock, max := a.SocketPath(), maxSocketPath
			if a.Attachment.Kind == AttachQEMUDgram {
				max -= len(".qemu")
			}
			if len(sock) > max {
				l.Add(p+".socket", sock, fmt.Sprintf("a path of at most %d bytes (a unix socket's limit; shorter VM or adapter names, or --socket-path)", max))
			}
			if who := sockets[sock]; who != "" {
				l.Add(p+".socket", sock, "a path no other adapter uses ("+who+" has it)")
			}
			sockets[sock] = "adapter " + a.ID()
		}
	}
}

// namespacePath is the file a namespace spec names (as nsrun.Path): a
// name is under /run/netns, a number is a PID.
func namespacePath(spec string) string {
	if strings.Contains(spec, "/") {
		return filepath.Clean(spec)
	}
	if _, err := strconv.Atoi(spec); err == nil {
		return "/proc/" + spec + "/ns/net"
	}
	return "/run/netns/" + spec
}

func (c *Config) validateVMHardware(vm *VM, l *field.List) {
	p := fmt.Sprintf("vms[%s]", vm.Name)
	if vm.Memory != 0 && (vm.Memory < 32 || vm.Memory > 1<<20) {
		l.Add(p+".memoryMiB", fmt.Sprint(vm.Memory), "32 to 1048576 MiB (256 if not set)")
	}
	if vm.CPUs < 0 || vm.CPUs > 256 {
		l.Add(p+".cpus", fmt.Sprint(vm.CPUs), "1 to 256 (1 if not set)")
	}
	for _, f := range []struct{ name, path string }{{"kernel", vm.Kernel}, {"initrd", vm.Initrd}, {"disk", vm.Disk}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			l.Add(p+"."+f.name, f.path, "an absolute path")
		}
	}
	if vm.Initrd != "" && vm.Kernel == "" {
		l.Add(p+".initrd", vm.Initrd, "only with a kernel")
	}
	if vm.Append != "" && vm.Kernel == "" {
		l.Add(p+".append", vm.Append, "only with a kernel")
	}
	if vm.NetworkBoot != "" && c.Adapter(vm.Name, vm.NetworkBoot) == nil {
		l.Add(p+".networkBoot", vm.NetworkBoot, "the name of one of the VM's adapters")
	}
}

func (c *Config) validateHost(l *field.List) {
	h := c.Host
	for _, m := range []struct {
		name string
		mac  frame.MAC
	}{{"host.macMin", h.MACMin}, {"host.macMax", h.MACMax}} {
		if !m.mac.IsUnicastStation() {
			l.Add(m.name, m.mac.String(), "a unicast MAC address (first octet even, not all zeros)")
		}
	}
	if h.MACMin.Uint64() > h.MACMax.Uint64() {
		l.Add("host.macMin", h.MACMin.String(), "at most host.macMax ("+h.MACMax.String()+")")
	}
}

func (c *Config) validateSwitches(l *field.List) map[string]*Switch {
	byName := map[string]*Switch{}
	uplinks := map[string]string{}
	for i := range c.Switches {
		s := &c.Switches[i]
		p := fmt.Sprintf("switches[%s]", s.Name)
		switch {
		case !nameOK(s.Name, maxIfName):
			l.Add(fmt.Sprintf("switches[%d].name", i), s.Name, ifNameRule)
		case byName[s.Name] != nil:
			l.Add(p+".name", s.Name, "a name no other switch has")
		}
		byName[s.Name] = s
		switch s.Type {
		case External:
			switch {
			case !nameOK(s.Uplink, maxIfName):
				l.Add(p+".uplink", s.Uplink, "the name of the physical NIC ("+ifNameRule+")")
			case uplinks[s.Uplink] != "":
				l.Add(p+".uplink", s.Uplink, "a NIC no other switch uses (switch "+uplinks[s.Uplink]+" has it)")
			}
			uplinks[s.Uplink] = s.Name
		case Internal, Private:
			if s.Uplink != "" {
				l.Add(p+".uplink", s.Uplink, "only on an external switch")
			}
			if s.AllowManagementOS != nil {
				l.Add(p+".allowManagementOS", fmt.Sprint(*s.AllowManagementOS), "only on an external switch")
			}
			if !s.UplinkVLAN.isZero() {
				l.Add(p+".uplinkVLAN", s.UplinkVLAN.String(), "only on an external switch")
			}
		default:
			l.Add(p+".type", string(s.Type), "external, internal or private")
		}
		if s.DefaultVLAN != 0 && !s.DefaultVLAN.IsValid() {
			l.Add(p+".defaultVLAN", s.DefaultVLAN.String(), "a VLAN ID from 1 to 4094")
		}
		if a := time.Duration(s.MACAgeing); a != 0 && (a < minAgeing || a > maxAgeing) {
			l.Add(p+".macAgeing", a.String(), "from 1s to 24h")
		}
		if s.TableSize < 0 || s.TableSize > maxTableSize {
			l.Add(p+".tableSize", fmt.Sprint(s.TableSize), fmt.Sprintf("0 (the default, 65536) to %d entries", maxTableSize))
		}
		if !s.HostVLAN.isZero() && !s.ManagementOS() {
			l.Add(p+".hostVLAN", s.HostVLAN.String(), "only on a switch with a host adapter (internal, or external with allowManagementOS)")
		}
		if s.Datapath != "" && s.Datapath != Userspace && s.Datapath != Kernel {
			l.Add(p+".datapath", string(s.Datapath), "userspace or kernel")
		}
		if s.IsKernel() && s.TableSize != 0 {
			l.Add(p+".tableSize", fmt.Sprint(s.TableSize), "0 on the kernel data path (its one MAC table for all switches is bounded as a whole; a bound per switch is not there yet)")
		}
		s.HostVLAN.validate(p+".hostVLAN", s.VLANOrDefault(), l)
		s.UplinkVLAN.validate(p+".uplinkVLAN", s.VLANOrDefault(), l)
	}
	return byName
}

func (c *Config) validateAdapters(l *field.List, switches map[string]*Switch, vms map[string]bool) {
	kernelPorts, joined := map[string]int{}, map[string]bool{}
	ids := map[string]bool{}
	macs := map[frame.MAC]string{}
	for i := range c.Adapters {
		a := &c.Adapters[i]
		p := fmt.Sprintf("adapters[%s]", a.ID())
		if !vms[a.VM] {
			l.Add(p+".vm", a.VM, "the name of an existing VM")
		}
		switch {
		case !nameOK(a.Name, maxName):
			l.Add(fmt.Sprintf("adapters[%d].name", i), a.Name, nameRule)
		case ids[a.ID()]:
			l.Add(p+".name", a.Name, "a name no other adapter of VM "+a.VM+" has")
		}
		ids[a.ID()] = true
		sw := switches[a.Switch]
		if sw == nil {
			l.Add(p+".switch", a.Switch, "the name of an existing switch")
		}
		switch {
		case a.MAC.IsZero() && !a.DynamicMAC:
			l.Add(p+".mac", "", "a MAC address, or dynamicMAC")
		case !a.MAC.IsZero() && !a.MAC.IsUnicastStation():
			l.Add(p+".mac", a.MAC.String(), "a unicast MAC address (first octet even)")
		case !a.MAC.IsZero() && macs[a.MAC] != "":
			l.Add(p+".mac", a.MAC.String(), "an address no other adapter has ("+macs[a.MAC]+" has it)")
		}
		if !a.MAC.IsZero() {
			macs[a.MAC] = a.ID()
		}
		if a.Type != "" && a.Type != Synthetic && a.Type != Legacy {
			l.Add(p+".type", string(a.Type), "synthetic (virtio-net) or legacy (DEC 21140)")
		}
		def := frame.VID(1)
		if sw != nil {
			def = sw.VLANOrDefault()
		}
		a.VLAN.validate(p+".vlan", def, l)
		a.Attachment.validate(p+".attachment", l)
		if sw != nil && sw.IsKernel() {
			if k := a.Attachment.Kind; k == AttachQEMUStream || k == AttachQEMUDgram {
				joined[sw.Name] = true // served by the core, joined to the kernel path by one port
			} else {
				kernelPorts[sw.Name]++
			}
		}
	}
	for _, s := range c.Switches {
		if !s.IsKernel() {
			continue
		}
		n := kernelPorts[s.Name]
		if joined[s.Name] {
			n++
		}
		if s.Type == External {
			n++
		}
		if s.ManagementOS() {
			n++
		}
		if n > MaxKernelPorts {
			l.Add(fmt.Sprintf("switches[%s].datapath", s.Name), string(s.Datapath),
				fmt.Sprintf("userspace for a switch of %d ports (the kernel data path takes at most %d)", n, MaxKernelPorts))
		}
	}
}

func (t *Attachment) validate(p string, l *field.List) {
	switch t.Kind {
	case AttachNetns:
		if t.Namespace == "" {
			l.Add(p+".namespace", "", "the network namespace (a name, a path or a PID)")
		}
		if t.Device != "" && !nameOK(t.Device, maxIfName) {
			l.Add(p+".device", t.Device, "the interface name inside the namespace ("+ifNameRule+")")
		}
	case AttachTAP:
		if !nameOK(t.Device, maxIfName) {
			l.Add(p+".device", t.Device, "the TAP's name ("+ifNameRule+")")
		}
	case AttachQEMUStream, AttachQEMUDgram:
		if t.Socket != "" && !filepath.IsAbs(t.Socket) {
			l.Add(p+".socket", t.Socket, "an absolute path, or empty for /run/vswitch/VM+NAME.sock")
		}
	default:
		l.Add(p+".kind", string(t.Kind), "netns, tap, qemu-stream or qemu-dgram")
	}
	if t.Kind != AttachNetns && t.Namespace != "" {
		l.Add(p+".namespace", t.Namespace, "only with kind netns")
	}
	if strings.HasPrefix(string(t.Kind), "qemu") && t.Device != "" {
		l.Add(p+".device", t.Device, "only with kind netns or tap")
	}
}

func (v *VLAN) isZero() bool { return *v == VLAN{} }
