package daemon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/port/afpacket"
)

// VXLANPort is the UDP port of the tunnels (IANA's).
const VXLANPort = 4789

// tunnel makes (or finds) a spanning switch's VXLAN device: the switch's
// VNI, this host's endpoint as source, UDP 4789, learning the other
// hosts' stations from what arrives; marked, up, no IPv6 of its own. A
// device of that name made for another VNI or endpoint is made anew.
func (b OSBackend) tunnel(s PortSpec) error {
	local, err := netip.ParseAddr(s.Local)
	if err != nil {
		return fmt.Errorf("tunnel endpoint %q: %w", s.Local, err)
	}
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return err
	}
	defer h.Close()
	if l, err := h.LinkByName(s.Device); err == nil {
		vx, ok := l.(*netlink.Vxlan)
		if ok && l.Attrs().Alias == Mark && vx.VxlanId == int(s.VNI) && vx.SrcAddr.Equal(net.IP(local.AsSlice())) &&
			(s.MTU == 0 || l.Attrs().MTU == s.MTU) {
			return b.switchSide(s.Device, true) // made before (a restart): adopted
		}
		if l.Attrs().Alias != Mark {
			return fmt.Errorf("%s exists and is not vswitch's: remove it, or give the switch another VNI", s.Device)
		}
		if err := h.LinkDel(l); err != nil {
			return err
		}
	}
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: s.Device, MTU: s.MTU}, VxlanId: int(s.VNI),
		SrcAddr: net.IP(local.AsSlice()), Port: VXLANPort, Learning: true}
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("make VXLAN device %s (VNI %d): %w", s.Device, s.VNI, err)
	}
	return b.switchSide(s.Device, true)
}

// removeTunnel deletes a VXLAN device vswitchd made.
func (b OSBackend) removeTunnel(name string) error {
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil || l.Attrs().Alias != Mark {
		return err
	}
	return h.LinkDel(l)
}

// SetPeers implements Backend: the tunnel's all-zeros forwarding entries
// (where broadcast and unknown unicast go: one copy to each peer) become
// exactly peers.
func (b OSBackend) SetPeers(device string, peers []netip.Addr) error {
	b.step("set peers of " + device)
	return b.withLink(device, func(h *netlink.Handle, l netlink.Link) error {
		have, err := h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
		if err != nil {
			return err
		}
		want := map[netip.Addr]bool{}
		for _, p := range peers {
			want[p] = true
		}
		zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
		for _, n := range have {
			ip, ok := netip.AddrFromSlice(n.IP)
			if !ok || !bytes.Equal(n.HardwareAddr, zero) {
				continue
			}
			ip = ip.Unmap()
			if want[ip] {
				delete(want, ip)
				continue
			}
			if err := h.NeighDel(&n); err != nil {
				return fmt.Errorf("remove peer %s of %s: %w", ip, device, err)
			}
		}
		for _, p := range peers {
			if !want[p] {
				continue
			}
			n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT | netlink.NUD_NOARP,
				Flags: netlink.NTF_SELF, IP: net.IP(p.AsSlice()), HardwareAddr: zero}
			if err := h.NeighAppend(n); err != nil {
				return fmt.Errorf("add peer %s to %s: %w", p, device, err)
			}
		}
		return nil
	})
}

// announce sends one RARP from mac on a namespace's interface, as QEMU
// announces a VM after a migration: every switch on the way learns where
// the station is now. Best effort: a lost announcement costs only one flood.
func announce(ns, dev string, mac frame.MAC) {
	f := make([]byte, 60)
	copy(f[0:6], frame.Broadcast[:])
	copy(f[6:12], mac[:])
	binary.BigEndian.PutUint16(f[12:], 0x8035)        // RARP
	copy(f[14:22], []byte{0, 1, 0x08, 0, 6, 4, 0, 3}) // Ethernet, IPv4, 6, 4, reverse request
	copy(f[22:28], mac[:])                            // sender hardware address
	copy(f[32:38], mac[:])                            // target hardware address
	nsrun.In(nsrun.Path(ns), func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	})
}

// tunnelPort is a spanning switch's tunnel on the userspace core: a packet
// socket on the VXLAN device, whose counters add the device's own (what
// the kernel dropped of what arrived on UDP 4789 for this VNI: bad VXLAN
// headers and the like).
type tunnelPort struct {
	*afpacket.Port
	ns, dev string
}

// BackendCounters implements l2.CountingPort.
func (p *tunnelPort) BackendCounters() map[string]uint64 {
	m := p.Port.BackendCounters()
	maps.Copy(m, OSBackend{Namespace: p.ns}.TunnelCounters(p.dev))
	return m
}

// TunnelCounters implements TunnelCounting: what the kernel dropped of
// what arrived on UDP 4789 for a VXLAN device's VNI (bad VXLAN headers
// and the like) and what it could not send (nil if the device cannot be
// read).
func (b OSBackend) TunnelCounters(dev string) map[string]uint64 {
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return nil
	}
	defer h.Close()
	l, err := h.LinkByName(dev)
	if err != nil || l.Attrs().Statistics == nil {
		return nil
	}
	st := l.Attrs().Statistics
	return map[string]uint64{"vxlan-rx-errors": st.RxErrors, "vxlan-bad-headers": st.RxFrameErrors, "vxlan-rx-dropped": st.RxDropped,
		"vxlan-tx-errors": st.TxErrors, "vxlan-tx-dropped": st.TxDropped}
}
