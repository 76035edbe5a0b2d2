package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/nsrun"
)

// kernelIfname names the switch-side end of the veth that vswitchd makes
// for a port on the kernel data path: "vk" and a hash of switch and port.
func kernelIfname(s PortSpec) string {
	h := sha256.Sum256([]byte(s.Switch + "/" + s.Name))
	return "vk" + hex.EncodeToString(h[:])[:12]
}

// OpenDevice implements Backend: a veth pair for a namespace's adapter
// (its end named as the adapter's device, with the adapter's MAC) and for
// the host adapter (its end named after the switch), a persistent TAP
// that QEMU opens, the uplink NIC itself (up, promiscuous). Every device
// it makes carries Mark; the switch-side ends have no IPv6, so the host
// sends nothing of its own into the switch.
func (b OSBackend) OpenDevice(s PortSpec) (string, error) {
	b.step("make device " + s.Kind + " " + s.Name)
	switch s.Kind {
	case KindUplink:
		return s.Device, b.withLink(s.Device, func(h *netlink.Handle, l netlink.Link) error {
			if err := h.SetPromiscOn(l); err != nil {
				return err
			}
			return h.LinkSetUp(l)
		})
	case string(config.AttachTAP):
		if err := b.qemuTAP(s.Device); err != nil {
			return "", err
		}
		return s.Device, b.switchSide(s.Device, false)
	case KindTunnel:
		return s.Device, b.tunnel(s)
	case KindHost:
		sw := kernelIfname(s)
		return sw, b.veth(sw, s.Device, b.Namespace, s.MAC, s.MTU)
	case KindJoin:
		if err := b.veth(s.Device, joinCoreEnd(s), b.Namespace, [6]byte{}, 0); err != nil {
			return "", err
		}
		return s.Device, b.switchSide(joinCoreEnd(s), true)
	case string(config.AttachNetns):
		sw := kernelIfname(s)
		return sw, notYet(b.veth(sw, s.Device, s.Namespace, s.MAC, s.MTU))
	}
	return "", fmt.Errorf("a %s port cannot be on the kernel data path", s.Kind)
}

// veth makes (or finds) a veth pair: sw in the daemon's namespace, peer
// named name in namespace ns, with mac if set; both marked and up.
func (b OSBackend) veth(sw, name, ns string, mac [6]byte, mtu int) error {
	hostNS, peerNS := nsrun.Path(b.Namespace), nsrun.Path(ns)
	if err := nsrun.Check(peerNS); err != nil {
		return err
	}
	h, err := nsrun.Netlink(hostNS)
	if err != nil {
		return err
	}
	defer h.Close()
	ph, err := nsrun.Netlink(peerNS)
	if err != nil {
		return err
	}
	defer ph.Close()
	if l, err := h.LinkByName(sw); err == nil {
		if _, err := ph.LinkByName(name); err == nil && l.Attrs().Alias == Mark {
			return b.upBoth(h, ph, sw, name, mac) // made before (a restart): adopted
		}
		if l.Attrs().Alias != Mark {
			return fmt.Errorf("%s exists and is not vswitch's", sw)
		}
		h.LinkDel(l) // its peer went with its namespace: make it again
	}
	if l, err := ph.LinkByName(name); err == nil {
		return fmt.Errorf("%s is taken (a %s device, alias %q)", name, l.Type(), l.Attrs().Alias)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: sw, MTU: mtu}, PeerName: name}
	if peerNS != hostNS {
		f, err := os.Open(peerNS)
		if err != nil {
			return err
		}
		defer f.Close()
		v.PeerNamespace = netlink.NsFd(int(f.Fd()))
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("veth %s/%s: %w", sw, name, err)
	}
	return b.upBoth(h, ph, sw, name, mac)
}

func (b OSBackend) upBoth(h, ph *netlink.Handle, sw, name string, mac [6]byte) error {
	peer, err := ph.LinkByName(name)
	if err != nil {
		return err
	}
	if mac != [6]byte{} {
		if err := ph.LinkSetHardwareAddr(peer, net.HardwareAddr(mac[:])); err != nil {
			return err
		}
	}
	if err := ph.LinkSetAlias(peer, Mark); err != nil {
		return err
	}
	if err := ph.LinkSetUp(peer); err != nil {
		return err
	}
	return b.switchSide(sw, true)
}

// switchSide turns a switch-side interface's IPv6 off, brings it up and,
// if vswitchd made it (mark), marks it: a TAP someone else made stays
// theirs (never marked, so never removed).
func (b OSBackend) switchSide(name string, mark bool) error {
	err := nsrun.In(nsrun.Path(b.Namespace), func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0)
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return b.withLink(name, func(h *netlink.Handle, l netlink.Link) error {
		if mark && l.Attrs().Alias != Mark {
			if err := h.LinkSetAlias(l, Mark); err != nil {
				return err
			}
		}
		return h.LinkSetUp(l)
	})
}

// withLink runs f on a link where the host side lives.
func (b OSBackend) withLink(name string, f func(*netlink.Handle, netlink.Link) error) error {
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return f(h, l)
}

// removeVeth deletes a veth end that vswitchd made (and so its peer);
// what is gone, or not vswitch's, is left.
func removeVeth(ns, name string) error {
	h, err := nsrun.Netlink(nsrun.Path(ns))
	if errors.Is(err, nsrun.ErrNoNamespace) {
		return nil // the namespace went, and the veth with it
	}
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		return nil
	}
	if l.Type() != "veth" || l.Attrs().Alias != Mark {
		return nil
	}
	return h.LinkDel(l)
}

// joinCoreEnd is the core's end of a join: "vu" where the kernel's is "vj".
func joinCoreEnd(s PortSpec) string { return "vu" + s.Device[2:] }
