package hostnet

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Saved is a NIC's identity as vswitchd keeps it in its store before an
// external switch takes it over: plain values that encode as JSON, so that
// a daemon restarted after a crash at any step can finish the move or give
// the NIC back what it had.
type Saved struct {
	MAC     string       `json:"mac"`
	MTU     int          `json:"mtu"`
	IPv6Off bool         `json:"ipv6Off"`
	Addrs   []SavedAddr  `json:"addrs,omitempty"`
	Routes  []SavedRoute `json:"routes,omitempty"`
}

// SavedAddr is one address with its prefix ("192.0.2.5/24").
type SavedAddr struct {
	CIDR  string `json:"cidr"`
	Flags int    `json:"flags,omitempty"`
	Scope int    `json:"scope,omitempty"`
}

// SavedRoute is one route; Dst "" is the default route.
type SavedRoute struct {
	Family   int    `json:"family"`
	Dst      string `json:"dst,omitempty"`
	Gw       string `json:"gw,omitempty"`
	Src      string `json:"src,omitempty"`
	Priority int    `json:"priority,omitempty"`
	Table    int    `json:"table,omitempty"`
	Scope    int    `json:"scope,omitempty"`
	Protocol int    `json:"protocol,omitempty"`
	Flags    int    `json:"flags,omitempty"` // onlink only
}

// Save reads what a NIC has now, to keep before a move.
func (m *Mover) Save(nic string) (Saved, error) {
	id, err := m.Snapshot(nic)
	if err != nil {
		return Saved{}, err
	}
	off, err := m.IPv6Off(nic)
	if err != nil {
		off = true // no IPv6 in this kernel or namespace
	}
	s := Saved{MAC: id.MAC.String(), MTU: id.MTU, IPv6Off: off}
	for _, a := range id.Addrs {
		s.Addrs = append(s.Addrs, SavedAddr{CIDR: a.IPNet.String(), Flags: a.Flags, Scope: a.Scope})
	}
	for _, r := range id.Routes {
		sr := SavedRoute{Family: r.Family, Flags: r.Flags, Priority: r.Priority, Table: r.Table, Scope: int(r.Scope), Protocol: int(r.Protocol)}
		if r.Dst != nil {
			sr.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			sr.Gw = r.Gw.String()
		}
		if r.Src != nil {
			sr.Src = r.Src.String()
		}
		s.Routes = append(s.Routes, sr)
	}
	return s, nil
}

// identity turns a saved identity back into netlink values.
func (s Saved) identity() (Identity, error) {
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{MAC: mac, MTU: s.MTU}
	for _, a := range s.Addrs {
		na, err := netlink.ParseAddr(a.CIDR)
		if err != nil {
			return Identity{}, err
		}
		na.Flags, na.Scope = a.Flags, a.Scope
		id.Addrs = append(id.Addrs, *na)
	}
	for _, r := range s.Routes {
		nr := netlink.Route{Family: r.Family, Priority: r.Priority, Table: r.Table, Scope: netlink.Scope(r.Scope),
			Protocol: netlink.RouteProtocol(r.Protocol), Flags: r.Flags}
		if r.Dst != "" {
			if _, nr.Dst, err = net.ParseCIDR(r.Dst); err != nil {
				return Identity{}, err
			}
		}
		nr.Gw, nr.Src = net.ParseIP(r.Gw), net.ParseIP(r.Src)
		id.Routes = append(id.Routes, nr)
	}
	return id, nil
}

// GiveBackSaved returns a NIC its identity when its switch goes: the host
// adapter's identity as it is now if the adapter is still there, then the
// NIC's own MAC, MTU and IPv6 setting and every address and route it had
// when it was saved (a move cut short by a crash may have left them on
// neither link). Every step may be repeated.
func (m *Mover) GiveBackSaved(adapter, nic string, saved Saved) error {
	h, err := m.handle()
	if err != nil {
		return &StepError{"open netlink", err}
	}
	defer h.Close()
	var nf netlink.LinkNotFoundError
	if adapter != "" {
		_, err = h.LinkByName(adapter)
	}
	switch {
	case adapter == "": // the identity was taken off the NIC (StripSaved), not moved
	case errors.As(err, &nf):
	case err != nil:
		return &StepError{"find " + adapter, err}
	default:
		if _, err := m.move(adapter, nic, false, nil); err != nil {
			return err
		}
	}
	return m.restore(h, nic, saved)
}

// StripSaved takes the saved identity off a NIC without giving it to any
// other link: the external switch that owns the NIC does not allow the
// management OS, so the host must not use the NIC beside the switch. The
// saved addresses and their routes go, and IPv6 is turned off there (its
// link-local address with it); the NIC keeps its MAC and MTU, and stays up
// for the switch. GiveBackSaved with no adapter undoes it. Every step may
// be repeated.
func (m *Mover) StripSaved(nic string, saved Saved) error {
	id, err := saved.identity()
	if err != nil {
		return &StepError{"read the saved identity of " + nic, err}
	}
	h, err := m.handle()
	if err != nil {
		return &StepError{"open netlink", err}
	}
	defer h.Close()
	l, err := h.LinkByName(nic)
	if err != nil {
		return &StepError{"find " + nic, err}
	}
	for _, r := range id.Routes {
		r.LinkIndex = l.Attrs().Index
		if err := m.step("remove route "+routeString(r)+" from "+nic, func() error {
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return err
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for _, a := range id.Addrs {
		if err := m.step("remove "+a.IPNet.String()+" from "+nic, func() error {
			if err := h.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return err
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := m.step("turn IPv6 off at "+nic, func() error { return m.setIPv6(nic, false) }); err != nil {
		return err
	}
	return m.step("bring "+nic+" up", func() error { return h.LinkSetUp(l) })
}

// restore sets a NIC's MAC, MTU, IPv6, addresses and routes as saved,
// skipping what is already so.
func (m *Mover) restore(h *netlink.Handle, nic string, saved Saved) error {
	id, err := saved.identity()
	if err != nil {
		return &StepError{"read the saved identity of " + nic, err}
	}
	l, err := h.LinkByName(nic)
	if err != nil {
		return &StepError{"find " + nic, err}
	}
	if err := m.step("set MAC and MTU of "+nic, func() error {
		if l.Attrs().HardwareAddr.String() != id.MAC.String() {
			if err := h.LinkSetHardwareAddr(l, id.MAC); err != nil {
				return err
			}
		}
		return h.LinkSetMTU(l, id.MTU)
	}); err != nil {
		return err
	}
	if err := m.step(fmt.Sprintf("set IPv6 off=%v at %s", saved.IPv6Off, nic), func() error { return m.setIPv6(nic, !saved.IPv6Off) }); err != nil {
		return err
	}
	if err := m.step("bring "+nic+" up", func() error { return h.LinkSetUp(l) }); err != nil {
		return err
	}
	for _, a := range id.Addrs {
		a.Label = ""
		if err := m.step("add "+a.IPNet.String()+" to "+nic, func() error {
			if err := h.AddrAdd(l, &a); !errors.Is(err, unix.EEXIST) {
				return err
			}
			return nil
		}); err != nil {
			return err
		}
	}
	for _, r := range id.Routes {
		r.LinkIndex = l.Attrs().Index
		if err := m.step("add route "+routeString(r)+" to "+nic, func() error { return h.RouteReplace(&r) }); err != nil {
			return err
		}
	}
	return nil
}
