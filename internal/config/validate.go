package config

import (
	"cmp"
	"fmt"
	"net/netip"
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

// HostNameRule is what a cluster host's name may be.
const HostNameRule = "1 to 64 of the characters A-Z a-z 0-9 _ . -"

// HostNameOK reports whether s can name a cluster host.
func HostNameOK(s string) bool { return nameOK(s, maxName) }

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
	hostOf := map[string]string{} // VM → its host
	for i, vm := range c.VMs {
		hostOf[vm.Name] = vm.Host
		path := fmt.Sprintf("vms[%d].name", i)
		switch {
		case !nameOK(vm.Name, maxName):
			l.Add(path, vm.Name, nameRule)
		case vms[vm.Name]:
			l.Add(path, vm.Name, "a name no other VM has")
		}
		vms[vm.Name] = true
		if vm.Host != "" && !nameOK(vm.Host, maxName) {
			l.Add(fmt.Sprintf("vms[%s].host", vm.Name), vm.Host, "a host name ("+nameRule+")")
		}
		c.validateVMHardware(&vm, &l)
	}
	c.validateAdapters(&l, switches, vms, hostOf)
	c.validateResources(&l, hostOf)
	return l.Err()
}

// maxSocketPath is the longest unix socket path (sun_path less its NUL);
// a dgram adapter's QEMU end adds ".qemu" to it.
const maxSocketPath = 107

// validateResources checks that no two objects claim one host resource:
// an interface name in the host's namespace (host adapters, uplinks, TAPs
// of tap adapters), an interface in a VM's namespace, a socket path.
func (c *Config) validateResources(l *field.List, hostOf map[string]string) {
	// interface name → who has it, per host: a spanning switch's claims
	// are on each of its hosts, or on every host ("*") when it spans all.
	host := map[string]string{}
	claimed := func(h, name string) string { return cmp.Or(host[h+"\x00"+name], host["*\x00"+name]) }
	hostsOf := func(s *Switch) []string {
		switch {
		case !s.Span:
			return []string{s.Host}
		case s.Hosts == "":
			return []string{"*"}
		}
		return s.HostList()
	}
	for i := range c.Switches {
		if s := &c.Switches[i]; s.ManagementOS() && nameOK(s.Name, maxIfName) {
			for _, h := range hostsOf(s) {
				host[h+"\x00"+s.Name] = "the host adapter of switch " + s.Name
			}
		}
	}
	for i := range c.Switches {
		s := &c.Switches[i]
		if s.Type != External || s.Uplink == "" {
			continue
		}
		for _, h := range hostsOf(s) {
			if who := claimed(h, s.Uplink); who != "" {
				l.Add("switches["+s.Name+"].uplink", s.Uplink, "a NIC that is not an interface of vswitch ("+who+")")
				break
			}
			host[h+"\x00"+s.Uplink] = "the uplink of switch " + s.Name
		}
	}
	inNS, sockets := map[string]string{}, map[string]string{}
	for i := range c.Adapters {
		a := &c.Adapters[i]
		p := fmt.Sprintf("adapters[%s].attachment", a.ID())
		switch a.Attachment.Kind {
		case AttachTAP:
			h := hostOf[a.VM]
			if who := claimed(h, a.Attachment.Device); who != "" {
				l.Add(p+".device", a.Attachment.Device, "a name no other interface of the host has ("+who+" has it)")
			}
			host[h+"\x00"+a.Attachment.Device] = "the TAP of adapter " + a.ID()
		case AttachNetns:
			dev := a.Attachment.Device
			if dev == "" {
				dev = "eth0"
			}
			k := hostOf[a.VM] + "\x00" + namespacePath(a.Attachment.Namespace) + "\x00" + dev
			if who := inNS[k]; who != "" {
				l.Add(p+".device", dev, "a name no other adapter has in namespace "+a.Attachment.Namespace+" ("+who+" has it)")
			}
			inNS[k] = "adapter " + a.ID()
		case AttachQEMUStream, AttachQEMUDgram:
			sock, max := hostOf[a.VM]+"\x00"+a.SocketPath(), maxSocketPath
			if a.Attachment.Kind == AttachQEMUDgram {
				max -= len(".qemu")
			}
			if len(a.SocketPath()) > max {
				l.Add(p+".socket", a.SocketPath(), fmt.Sprintf("a path of at most %d bytes (a unix socket's limit; shorter VM or adapter names, or --socket-path)", max))
			}
			if who := sockets[sock]; who != "" {
				l.Add(p+".socket", a.SocketPath(), "a path no other adapter uses ("+who+" has it)")
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
	vnis := map[uint32]string{}
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
			case !s.Span && uplinks[s.Host+"\x00"+s.Uplink] != "":
				l.Add(p+".uplink", s.Uplink, "a NIC no other switch uses (switch "+uplinks[s.Host+"\x00"+s.Uplink]+" has it)")
			}
			if !s.Span {
				uplinks[s.Host+"\x00"+s.Uplink] = s.Name
			}
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
		switch {
		case s.TableSize < 0 || s.TableSize > maxTableSize:
			l.Add(p+".tableSize", fmt.Sprint(s.TableSize), fmt.Sprintf("0 (the default, 65536) to %d entries", maxTableSize))
		case s.TableSize > MaxKernelTableSize && s.MayBeKernel():
			l.Add(p+".tableSize", fmt.Sprint(s.TableSize), fmt.Sprintf("at most %d entries on the kernel data path (which auto picks where a host has it; "+
				"datapath userspace takes up to %d)", MaxKernelTableSize, maxTableSize))
		}
		if !s.HostVLAN.isZero() && !s.ManagementOS() {
			l.Add(p+".hostVLAN", s.HostVLAN.String(), "only on a switch with a host adapter (internal, or external with allowManagementOS)")
		}
		if s.Datapath != "" && s.Datapath != Userspace && s.Datapath != Kernel && s.Datapath != Auto {
			l.Add(p+".datapath", string(s.Datapath), "auto, kernel or userspace")
		}
		s.HostVLAN.validate(p+".hostVLAN", s.VLANOrDefault(), l)
		s.UplinkVLAN.validate(p+".uplinkVLAN", s.VLANOrDefault(), l)
		s.validatePlace(p, vnis, l)
	}
	return byName
}

// validatePlace checks where a switch lives: on one host, or spanning
// hosts with a VNI no other switch has.
func (s *Switch) validatePlace(p string, vnis map[uint32]string, l *field.List) {
	if s.Host != "" && !nameOK(s.Host, maxName) {
		l.Add(p+".host", s.Host, "a host name ("+nameRule+")")
	}
	if s.RemoteVTEPs != "" {
		for _, r := range strings.Split(s.RemoteVTEPs, ",") {
			if a, err := netip.ParseAddr(r); err != nil || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" {
				l.Add(p+".remoteVTEPs", s.RemoteVTEPs, "unicast IP addresses separated by commas (plain VXLAN hosts the switch also floods to)")
				break
			}
		}
		if !s.Span {
			l.Add(p+".remoteVTEPs", s.RemoteVTEPs, "only on a spanning switch (span)")
		}
	}
	if !s.Span {
		if s.Hosts != "" {
			l.Add(p+".hosts", s.Hosts, "only on a spanning switch (span)")
		}
		if s.VNI != 0 {
			l.Add(p+".vni", fmt.Sprint(s.VNI), "only on a spanning switch (span)")
		}
		return
	}
	if s.Host != "" {
		l.Add(p+".host", s.Host, "empty on a spanning switch (it is on hosts)")
	}
	seen := map[string]bool{}
	for _, h := range s.HostList() {
		if !nameOK(h, maxName) || seen[h] {
			l.Add(p+".hosts", s.Hosts, "host names separated by commas, each once ("+nameRule+"), or empty for every host")
			break
		}
		seen[h] = true
	}
	switch {
	case s.VNI < 1 || s.VNI > MaxVNI:
		l.Add(p+".vni", fmt.Sprint(s.VNI), fmt.Sprintf("a VXLAN network identifier from 1 to %d", MaxVNI))
	case vnis[s.VNI] != "":
		l.Add(p+".vni", fmt.Sprint(s.VNI), "a VNI no other switch has (switch "+vnis[s.VNI]+" has it)")
	default:
		vnis[s.VNI] = s.Name
	}
}

func (c *Config) validateAdapters(l *field.List, switches map[string]*Switch, vms map[string]bool, hostOf map[string]string) {
	kernelPorts, joined := map[[2]string]int{}, map[[2]string]bool{}
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
		} else if h := hostOf[a.VM]; !sw.On(h) {
			l.Add(p+".switch", a.Switch, "a switch on host "+h+", where VM "+a.VM+" is (switch "+sw.Name+" is "+sw.Where()+")")
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
		if a.MACLimit < 0 || a.MACLimit > maxTableSize {
			l.Add(p+".macLimit", fmt.Sprint(a.MACLimit), fmt.Sprintf("0 (no limit of its own) to %d learned addresses", maxTableSize))
		}
		a.Attachment.validate(p+".attachment", l)
		if sw != nil && sw.MayBeKernel() {
			k := [2]string{sw.Name, hostOf[a.VM]} // the ports a kernel switch has on one host
			if a.Attachment.Kind == AttachQEMUStream || a.Attachment.Kind == AttachQEMUDgram {
				joined[k] = true // served by the core, joined to the kernel path by one port
			} else {
				kernelPorts[k]++
			}
		}
	}
	for k, n := range kernelPorts {
		if joined[k] {
			n++
			delete(joined, k)
		}
		kernelPorts[k] = n
	}
	for k := range joined {
		kernelPorts[k] = 1
	}
	for _, s := range c.Switches {
		if !s.MayBeKernel() {
			continue
		}
		extra := 0 // the switch's own ports, on each of its hosts
		for _, own := range []bool{s.Type == External, s.ManagementOS(), s.Span} {
			if own {
				extra++
			}
		}
		most, on := extra, ""
		for k, n := range kernelPorts {
			if k[0] == s.Name && n+extra > most {
				most, on = n+extra, k[1]
			}
		}
		if most > MaxKernelPorts {
			where := ""
			if on != "" {
				where = " on host " + on
			}
			l.Add(fmt.Sprintf("switches[%s].datapath", s.Name), string(s.Datapath),
				fmt.Sprintf("userspace for a switch of %d ports%s (the kernel data path, which auto picks where a host has it, takes at most %d)",
					most, where, MaxKernelPorts))
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

// Where says where a switch is, for messages: "on host h2", "on every
// host", "on hosts h1,h2" (spanning), or "not on a cluster host".
func (s *Switch) Where() string {
	switch {
	case !s.Span && s.Host == "":
		return "not on a cluster host"
	case !s.Span:
		return "on host " + s.Host
	case s.Hosts == "":
		return "on every host"
	}
	return "on hosts " + s.Hosts
}
