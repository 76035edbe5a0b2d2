package daemon

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vlan"
)

// Port kinds: the uplink and the host adapter of a switch, and the four
// adapter attachments of config.
const (
	KindUplink = "uplink"
	KindHost   = "host"
	// KindJoin is the veth pair that joins a kernel switch's program to
	// the userspace core that serves its QEMU socket adapters.
	KindJoin = "join"
	// KindTunnel is a spanning switch's VXLAN device: its port to the
	// switch's other hosts.
	KindTunnel = "tunnel"
)

// Overlay is what a cluster host's spanning switches need: this host's
// tunnel endpoint, the MTU their adapters get, and the other hosts' tunnel
// endpoints for each spanning switch.
type Overlay struct {
	Local netip.Addr
	MTU   int                     // of adapters and host adapters on spanning switches; 0: the device's default
	Peers map[string][]netip.Addr // switch → the other hosts' endpoints, sorted
}

// equal reports whether two overlays (either may be nil) are the same.
func (o *Overlay) equal(p *Overlay) bool {
	if o == nil || p == nil {
		return o == p
	}
	return o.Local == p.Local && o.MTU == p.MTU && maps.EqualFunc(o.Peers, p.Peers, slices.Equal)
}

// TunnelDevice names a spanning switch's VXLAN device: "vx" and its VNI.
func TunnelDevice(vni uint32) string { return fmt.Sprintf("vx%d", vni) }

// PortSpec is the OS side of a port: what the backend opens. Two specs
// that are equal open the same thing.
type PortSpec struct {
	Switch    string
	Name      string // "uplink", "host", or the adapter's "vm/nic"
	Kind      string // KindUplink, KindHost or a config.AttachKind
	Device    string // uplink: the NIC; host: the switch name; netns: the name inside; tap: the TAP
	Namespace string // netns: the namespace
	Socket    string // qemu-*: the socket path
	MAC       frame.MAC
	Kernel    bool   // on the kernel data path: a veth pair where the userspace core has a TAP
	MTU       int    // the device's MTU when vswitchd makes it (0: its default)
	VNI       uint32 // tunnel: the VXLAN network identifier
	Local     string // tunnel: this host's endpoint address
	// Announce: once open, the adapter announces its MAC (a RARP from its
	// side, as QEMU does after a migration), so that every host of a
	// spanning switch learns where it is at once.
	Announce bool
}

// portPlan is one desired port: its OS side and its switch configuration.
type portPlan struct {
	spec PortSpec
	cfg  l2.PortConfig
}

// switchPlan is one desired switch.
type switchPlan struct {
	opts      l2.Options
	ports     map[string]*portPlan // by port name
	takeOver  string               // the NIC whose identity is taken (external switches)
	hostHolds bool                 // the host adapter takes it; false: it is only taken off the NIC
	kernel    bool                 // on the kernel data path
	peers     []netip.Addr         // spanning: the other hosts' tunnel endpoints
}

// networkSide is the split-horizon group of a switch's uplink and VXLAN
// tunnel: nothing goes from one to the other, so that a spanning external
// switch whose hosts' uplinks share a physical network makes no loop
// (a station on that network reaches each host's VMs by its uplink).
const networkSide = 1

// plan turns a valid state into the switches and ports it asks for; the
// adapters of a VM that vswitchd runs are there only while running says so.
// kernel says whether the host has the kernel data path (where auto
// switches run).
func plan(c *config.Config, running func(vm string) bool, ov *Overlay, kernel bool) (map[string]*switchPlan, error) {
	out := map[string]*switchPlan{}
	for i := range c.Switches {
		s := &c.Switches[i]
		onKernel := s.OnKernel(kernel)
		sp := &switchPlan{
			opts: l2.Options{Name: s.Name, DefaultVLAN: s.VLANOrDefault(), FDBSize: s.TableSize,
				Ageing: time.Duration(s.MACAgeing)},
			ports: map[string]*portPlan{},
		}
		if s.Type == config.External {
			v, err := s.UplinkPort()
			if err != nil {
				return nil, err
			}
			sp.ports[KindUplink] = &portPlan{spec: PortSpec{Switch: s.Name, Name: KindUplink, Kind: KindUplink, Device: s.Uplink, Kernel: onKernel},
				cfg: l2.PortConfig{VLAN: v, Group: networkSide}}
		}
		if s.Type == config.External {
			sp.takeOver, sp.hostHolds = s.Uplink, s.ManagementOS()
		}
		sp.kernel = onKernel
		if s.ManagementOS() {
			v, err := s.HostVLAN.Port(s.VLANOrDefault())
			if err != nil {
				return nil, fmt.Errorf("switch %s host VLAN: %w", s.Name, err)
			}
			sp.ports[KindHost] = &portPlan{spec: PortSpec{Switch: s.Name, Name: KindHost, Kind: KindHost, Device: s.Name, Kernel: onKernel},
				cfg: l2.PortConfig{VLAN: v}}
		}
		if s.Span {
			if ov == nil || !ov.Local.IsValid() {
				return nil, fmt.Errorf("switch %s spans hosts, and this host has no tunnel endpoint (vswitchd --vtep)", s.Name)
			}
			// Every VLAN rides the tunnel, tagged but the default VLAN,
			// like the uplink's default: a plain Linux VXLAN host sees the
			// default VLAN untagged.
			v, _ := vlan.Trunk(frame.MustParseVLANSet("1-4094"), s.VLANOrDefault())
			sp.ports[KindTunnel] = &portPlan{spec: PortSpec{Switch: s.Name, Name: KindTunnel, Kind: KindTunnel, Device: TunnelDevice(s.VNI),
				Kernel: onKernel, VNI: s.VNI, Local: ov.Local.String(), MTU: ov.MTU}, cfg: l2.PortConfig{VLAN: v, Group: networkSide}}
			sp.peers = ov.Peers[s.Name]
			if h := sp.ports[KindHost]; h != nil {
				h.spec.MTU = ov.MTU
			}
		}
		out[s.Name] = sp
	}
	for i := range c.Adapters {
		a := &c.Adapters[i]
		if vm := c.VM(a.VM); vm != nil && vm.Managed() && (running == nil || !running(vm.Name)) {
			continue
		}
		sp := out[a.Switch]
		v, err := a.VLAN.Port(sp.opts.DefaultVLAN)
		if err != nil {
			return nil, fmt.Errorf("adapter %s VLAN: %w", a.ID(), err)
		}
		spec := PortSpec{Switch: a.Switch, Name: a.ID(), Kind: string(a.Attachment.Kind), MAC: a.MAC, Kernel: sp.kernel}
		if t := sp.ports[KindTunnel]; t != nil && a.Attachment.Kind == config.AttachNetns {
			spec.MTU = t.spec.MTU // what vswitchd makes fits the tunnel
			spec.Announce = true
		}
		switch a.Attachment.Kind {
		case config.AttachNetns:
			spec.Namespace, spec.Device = a.Attachment.Namespace, cmp.Or(a.Attachment.Device, tap.DefaultName)
		case config.AttachTAP:
			spec.Device = a.Attachment.Device
		default:
			spec.Socket = a.SocketPath()
		}
		sp.ports[a.ID()] = &portPlan{spec: spec, cfg: l2.PortConfig{VLAN: v, MAC: a.MAC, SpoofGuard: a.SpoofGuard(), MACLimit: a.MACLimit}}
	}
	return out, nil
}

// describe renders ports of a switch plan for logs and tests.
func (p *portPlan) String() string {
	s := fmt.Sprintf("%s %s", p.spec.Name, p.spec.Kind)
	for _, kv := range [][2]string{{"dev", p.spec.Device}, {"ns", p.spec.Namespace}, {"sock", p.spec.Socket}} {
		if kv[1] != "" {
			s += " " + kv[0] + "=" + kv[1]
		}
	}
	if !p.cfg.MAC.IsZero() {
		s += " mac=" + p.cfg.MAC.String()
	}
	if p.cfg.SpoofGuard {
		s += " guard"
	}
	if p.cfg.MACLimit > 0 {
		s += fmt.Sprintf(" limit=%d", p.cfg.MACLimit)
	}
	return s + " [" + p.cfg.VLAN.String() + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
