// Package config is vswitch's desired state: the host's MAC address pool,
// the switches (external, internal, private), the VMs and their network
// adapters, as Hyper-V models them. It validates a whole state at once,
// reporting every problem with the field, the value and what is allowed,
// and offers the edits the API makes (each on a copy, validated before it
// is kept). It does no I/O and does not know the switch core.
package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
)

// Config is the whole desired state.
type Config struct {
	Host     Host      `json:"host"`
	Switches []Switch  `json:"switches"`
	VMs      []VM      `json:"vms"`
	Adapters []Adapter `json:"adapters"`
}

// Host is the management OS's settings.
type Host struct {
	// The MAC address pool dynamic adapters take their addresses from.
	MACMin frame.MAC `json:"macMin"`
	MACMax frame.MAC `json:"macMax"`
}

// SwitchType is Hyper-V's switch type.
type SwitchType string

// Switch types.
const (
	External SwitchType = "external" // uplink on a physical NIC, host adapter unless allowManagementOS is off
	Internal SwitchType = "internal" // VMs and a host adapter
	Private  SwitchType = "private"  // VMs only
)

// Switch is a virtual switch.
type Switch struct {
	Name string     `json:"name"`
	Type SwitchType `json:"type"`
	// Uplink is the physical NIC of an external switch.
	Uplink string `json:"uplink,omitempty"`
	// AllowManagementOS gives the host an adapter on an external switch
	// (true if unset, as on Hyper-V).
	AllowManagementOS *bool     `json:"allowManagementOS,omitempty"`
	DefaultVLAN       frame.VID `json:"defaultVLAN,omitempty"` // VLAN of untagged ports; 1 if 0
	MACAgeing         Duration  `json:"macAgeing,omitzero"`    // 300 s if 0
	TableSize         int       `json:"tableSize,omitempty"`   // learned MAC entries; 65,536 if 0
	Notes             string    `json:"notes,omitempty"`
	// HostVLAN is the host adapter's VLAN setting (Hyper-V's -ManagementOS).
	HostVLAN VLAN `json:"hostVLAN,omitzero"`
	// UplinkVLAN is the uplink's; unset means a trunk of 1-4094 with the
	// default VLAN native, so untagged VMs leave the wire untagged.
	UplinkVLAN VLAN `json:"uplinkVLAN,omitzero"`
	// Datapath is what forwards the switch's frames: the kernel data path
	// (eBPF programs on the ports), the userspace core, or auto (the
	// kernel data path on a host that has it, else the core: what a new
	// switch gets). "" is the core: switches stored before there was a
	// choice keep the data path they had.
	Datapath Datapath `json:"datapath,omitempty"`
	// Host is the cluster host a switch that does not span lives on (""
	// on a single host).
	Host string `json:"host,omitempty"`
	// Span makes the switch exist on several hosts of a cluster (Hosts,
	// or every host when Hosts is empty), its frames between hosts
	// carried in VXLAN with the switch's VNI.
	Span bool `json:"span,omitempty"`
	// Hosts are the hosts a spanning switch is on, comma-separated and
	// sorted ("": every host of the cluster).
	Hosts string `json:"hosts,omitempty"`
	// VNI is a spanning switch's VXLAN network identifier (1-16777215),
	// unique in the cluster.
	VNI uint32 `json:"vni,omitempty"`
	// RemoteVTEPs are tunnel endpoints outside the cluster (plain Linux
	// VXLAN hosts) that a spanning switch also floods to, comma-separated.
	RemoteVTEPs string `json:"remoteVTEPs,omitempty"`
}

// Remotes returns the switch's remote tunnel endpoints (valid ones only).
func (s *Switch) Remotes() []netip.Addr {
	var out []netip.Addr
	for _, r := range strings.Split(s.RemoteVTEPs, ",") {
		if a, err := netip.ParseAddr(r); err == nil {
			out = append(out, a)
		}
	}
	return out
}

// MaxVNI is the largest VXLAN network identifier (24 bits).
const MaxVNI = 1<<24 - 1

// On reports whether the switch exists on the named host ("" on a single
// host): a spanning switch on every host it spans, any other on its own.
func (s *Switch) On(host string) bool {
	if !s.Span {
		return s.Host == host
	}
	return s.Hosts == "" || slices.Contains(s.HostList(), host)
}

// HostList returns the hosts a spanning switch names (none: every host).
func (s *Switch) HostList() []string {
	if s.Hosts == "" {
		return nil
	}
	return strings.Split(s.Hosts, ",")
}

// Datapath is what forwards a switch's frames.
type Datapath string

// Data paths.
const (
	Userspace Datapath = "userspace" // vswitchd's forwarding threads (also "")
	Kernel    Datapath = "kernel"    // eBPF programs at tc ingress of every port, frames stay in the kernel
	Auto      Datapath = "auto"      // kernel where the host has the kernel data path, else userspace (a new switch's default)
)

// MaxKernelPorts is how many kernel ports a switch on the kernel data path
// may have (uplink and host adapter included; its QEMU socket adapters,
// served by the core, take one port together).
const MaxKernelPorts = 1024

// MaxKernelTableSize is the largest MAC table (tableSize) of a switch on
// the kernel data path: the program's table, which all its switches share.
const MaxKernelTableSize = 1 << 20

// OnKernel reports whether the switch runs on the kernel data path on a
// host that has it (kernel) or not: kernel, or auto where it is there.
func (s *Switch) OnKernel(kernel bool) bool {
	return s.Datapath == Kernel || s.Datapath == Auto && kernel
}

// RunsOn names the data path the switch runs on, on a host that has the
// kernel data path (kernel) or not.
func (s *Switch) RunsOn(kernel bool) Datapath {
	if s.OnKernel(kernel) {
		return Kernel
	}
	return Userspace
}

// MayBeKernel reports whether the switch runs on the kernel data path
// on some host: its limits apply.
func (s *Switch) MayBeKernel() bool { return s.Datapath == Kernel || s.Datapath == Auto }

// ManagementOS reports whether the switch has a host adapter.
func (s *Switch) ManagementOS() bool {
	switch s.Type {
	case Internal:
		return true
	case External:
		return s.AllowManagementOS == nil || *s.AllowManagementOS
	}
	return false
}

// VLANOrDefault returns the switch's default VLAN.
func (s *Switch) VLANOrDefault() frame.VID {
	if s.DefaultVLAN == 0 {
		return 1
	}
	return s.DefaultVLAN
}

// VM is a workload with network adapters. The hardware fields matter to
// VMs that vswitchd runs with QEMU (vswitchctl vm start); a namespace or a
// VM started elsewhere only needs the name.
type VM struct {
	Name   string `json:"name"`
	Notes  string `json:"notes,omitempty"`
	Memory int    `json:"memoryMiB,omitempty"` // 256 if 0
	CPUs   int    `json:"cpus,omitempty"`      // 1 if 0
	Kernel string `json:"kernel,omitempty"`    // a kernel to boot directly
	Initrd string `json:"initrd,omitempty"`
	Append string `json:"append,omitempty"` // the kernel command line
	Disk   string `json:"disk,omitempty"`   // a disk image to boot from
	// NetworkBoot names the adapter to boot from over the network (PXE).
	NetworkBoot string `json:"networkBoot,omitempty"`
	// Host is the cluster host the VM and its adapters live on ("" on a
	// single host).
	Host string `json:"host,omitempty"`
}

// Managed reports whether vswitchd runs the VM (it has a kernel, a disk or
// a network boot adapter): its adapters are then up only while it runs.
func (vm *VM) Managed() bool { return vm.Kernel != "" || vm.Disk != "" || vm.NetworkBoot != "" }

// AdapterType is the virtual NIC model the guest sees.
type AdapterType string

// Adapter types.
const (
	Synthetic AdapterType = "synthetic" // virtio-net: fast, needs the guest's driver
	Legacy    AdapterType = "legacy"    // emulated DEC 21140 (tulip): any guest, PXE boot
)

// AttachKind is how an adapter's frames reach the switch.
type AttachKind string

// Attachment kinds.
const (
	AttachNetns      AttachKind = "netns"       // vswitchd makes a TAP inside the namespace
	AttachTAP        AttachKind = "tap"         // a TAP that QEMU or libvirt opens; vswitchd uses its host side
	AttachQEMUStream AttachKind = "qemu-stream" // a unix socket for -netdev stream
	AttachQEMUDgram  AttachKind = "qemu-dgram"  // a unix socket for -netdev dgram
)

// Attachment says where an adapter lives.
type Attachment struct {
	Kind      AttachKind `json:"kind"`
	Namespace string     `json:"namespace,omitempty"` // netns: the namespace (name, path or PID)
	Device    string     `json:"device,omitempty"`    // netns: the name inside it (eth0); tap: the TAP's name
	Socket    string     `json:"socket,omitempty"`    // qemu-*: the socket path
}

// Adapter is a VM's network adapter: a port on a switch.
type Adapter struct {
	VM     string `json:"vm"`
	Name   string `json:"name"`
	Switch string `json:"switch"`
	// MAC is the adapter's address: given (static) or taken from the pool
	// when DynamicMAC is set (and kept from then on).
	MAC        frame.MAC   `json:"mac,omitzero"`
	DynamicMAC bool        `json:"dynamicMAC,omitempty"`
	Type       AdapterType `json:"type,omitempty"` // synthetic if ""
	VLAN       VLAN        `json:"vlan,omitzero"`
	// MACSpoofGuard drops frames whose source is not the adapter's MAC
	// (on if unset, as on Hyper-V).
	MACSpoofGuard *bool `json:"macSpoofGuard,omitempty"`
	// MACLimit bounds the stations the switch learns behind the adapter
	// (with the spoofing guard off: a VM that bridges or routes for
	// others); past it a new source is not learned (counted as
	// learn-refused, its frames still forwarded and frames to it
	// flooded). 0: no limit of its own, only the switch's table size.
	MACLimit   int        `json:"macLimit,omitempty"`
	Attachment Attachment `json:"attachment"`
}

// SocketDir is where qemu-* sockets go when an adapter names none.
const SocketDir = "/run/vswitch"

// SocketPath returns the unix socket of a qemu-* adapter: the one given,
// or SocketDir/VM+NAME.sock ('+' is in no name, so no two adapters share
// a default path).
func (a *Adapter) SocketPath() string {
	if a.Attachment.Socket != "" {
		return a.Attachment.Socket
	}
	return SocketDir + "/" + a.VM + "+" + a.Name + ".sock"
}

// ID is the adapter's name as "vm/name".
func (a *Adapter) ID() string { return a.VM + "/" + a.Name }

// SpoofGuard reports whether the MAC spoofing guard is on.
func (a *Adapter) SpoofGuard() bool { return a.MACSpoofGuard == nil || *a.MACSpoofGuard }

// TypeOrDefault returns the adapter type, synthetic if unset.
func (a *Adapter) TypeOrDefault() AdapterType {
	if a.Type == "" {
		return Synthetic
	}
	return a.Type
}

// Duration is a time.Duration written as "300s" in JSON.
type Duration time.Duration

// MarshalText writes the duration as Go does ("5m0s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "300s", "5m" and the like.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a number with a unit, like 300s or 5m", b)
	}
	*d = Duration(v)
	return nil
}

// Clone returns a deep copy. It copies field by field (a JSON round trip
// cost a third of an API write at 1,000 adapters); TestCloneKnowsEveryField
// fails when a field that needs more than a copy is added.
func (c *Config) Clone() *Config {
	out := &Config{Host: c.Host, Switches: slices.Clone(c.Switches), VMs: slices.Clone(c.VMs), Adapters: slices.Clone(c.Adapters)}
	for i := range out.Switches {
		out.Switches[i].AllowManagementOS = cloneBool(out.Switches[i].AllowManagementOS)
	}
	for i := range out.Adapters {
		out.Adapters[i].MACSpoofGuard = cloneBool(out.Adapters[i].MACSpoofGuard)
	}
	return out
}

// Equal reports whether two states are the same (an empty list and no
// list are the same).
func (c *Config) Equal(d *Config) bool {
	return c.Host == d.Host && slices.EqualFunc(c.Switches, d.Switches, func(a, b Switch) bool { return a.Equal(&b) }) &&
		slices.Equal(c.VMs, d.VMs) && slices.EqualFunc(c.Adapters, d.Adapters, func(a, b Adapter) bool { return a.Equal(&b) })
}

// Equal reports whether two adapters (either may be nil) are the same:
// field by field, the spoofing guard by value. Adapters are compared once
// per adapter on every write, so this is a memory compare, not reflection
// (TestCloneKnowsEveryField fails when a field needs more than ==).
func (a *Adapter) Equal(b *Adapter) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.MACSpoofGuard, y.MACSpoofGuard = nil, nil
	return x == y && boolEqual(a.MACSpoofGuard, b.MACSpoofGuard)
}

// Equal reports whether two switches (either may be nil) are the same.
func (s *Switch) Equal(t *Switch) bool {
	if s == nil || t == nil {
		return s == t
	}
	x, y := *s, *t
	x.AllowManagementOS, y.AllowManagementOS = nil, nil
	return x == y && boolEqual(s.AllowManagementOS, t.AllowManagementOS)
}

func boolEqual(a, b *bool) bool { return a == nil && b == nil || a != nil && b != nil && *a == *b }

func cloneBool(p *bool) *bool {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// ForHost returns the part of the state that one host converges: the pool,
// the switches on it, its VMs and their adapters. The slices are new; the
// values behind pointer fields are c's: treat it as read-only.
func (c *Config) ForHost(host string) *Config {
	out := &Config{Host: c.Host}
	for _, s := range c.Switches {
		if s.On(host) {
			out.Switches = append(out.Switches, s)
		}
	}
	here := map[string]bool{}
	for _, vm := range c.VMs {
		if vm.Host == host {
			out.VMs = append(out.VMs, vm)
			here[vm.Name] = true
		}
	}
	for _, a := range c.Adapters {
		if here[a.VM] {
			out.Adapters = append(out.Adapters, a)
		}
	}
	return out
}

// AllocateVNI returns the lowest VNI no switch has.
func (c *Config) AllocateVNI() (uint32, error) {
	used := map[uint32]bool{}
	for _, s := range c.Switches {
		used[s.VNI] = true
	}
	for v := uint32(1); v <= MaxVNI; v++ {
		if !used[v] {
			return v, nil
		}
	}
	return 0, fmt.Errorf("every VNI is taken")
}
