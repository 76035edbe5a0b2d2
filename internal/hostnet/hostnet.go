// Package hostnet moves the host's network identity between a physical NIC
// and the host adapter of an external switch, as Hyper-V does when it binds
// a switch to a NIC: the adapter takes the NIC's MAC, MTU, IPv4 and IPv6
// addresses and routes (same metrics, the default route too), and the NIC
// keeps no address and no IPv6, up, for the switch alone. Each move is one
// transaction: if a step fails, every step already done is undone, and the
// error names the step. The time during which the host has no working
// address is measured.
package hostnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/nsrun"
)

// StepError says which step of a move failed; everything done before it was undone.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return e.Step + ": " + e.Err.Error() }
func (e *StepError) Unwrap() error { return e.Err }

// Identity is what moves: a link's layer-2 and layer-3 settings.
type Identity struct {
	MAC    net.HardwareAddr
	MTU    int
	Addrs  []netlink.Addr  // without IPv6 link-local addresses, which every link makes itself
	Routes []netlink.Route // without the routes the kernel makes for addresses (proto kernel)
}

// Mover moves identities inside one namespace ("" is the caller's).
type Mover struct {
	Namespace string
	// Step, if set, is called before each step of a move with its name
	// (crash tests panic there).
	Step func(step string)
	// failAt, in tests, makes the named step fail.
	failAt string
}

func (m *Mover) handle() (*netlink.Handle, error) { return nsrun.Netlink(nsrun.Path(m.Namespace)) }

// Snapshot reads a link's identity.
func (m *Mover) Snapshot(link string) (Identity, error) {
	h, err := m.handle()
	if err != nil {
		return Identity{}, err
	}
	defer h.Close()
	return snapshot(h, link)
}

func snapshot(h *netlink.Handle, name string) (Identity, error) {
	l, err := h.LinkByName(name)
	if err != nil {
		return Identity{}, err
	}
	id := Identity{MAC: l.Attrs().HardwareAddr, MTU: l.Attrs().MTU}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return id, err
	}
	for _, a := range addrs {
		if a.IP.To4() == nil && a.IP.IsLinkLocalUnicast() {
			continue
		}
		id.Addrs = append(id.Addrs, a)
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return id, err
	}
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Table == unix.RT_TABLE_LOCAL || r.Dst != nil && r.Dst.IP.IsMulticast() ||
			r.Dst != nil && r.Dst.IP.To4() == nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		// Only "onlink" is the route's own; "linkdown" and "dead" are the
		// kernel's word on the link now (a TAP whose reader is gone), and
		// the kernel refuses them in a new route.
		r.Flags &= unix.RTNH_F_ONLINK
		id.Routes = append(id.Routes, r)
	}
	// Direct routes first, then those through a gateway.
	slices.SortStableFunc(id.Routes, func(a, b netlink.Route) int { return boolInt(a.Gw != nil) - boolInt(b.Gw != nil) })
	return id, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// undoStack runs the undo steps of a transaction in reverse.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }
func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// TakeOver moves nic's identity to adapter (the host adapter) and leaves
// nic without addresses or IPv6, up. It returns how long the host had no
// address (from the first address removed to the last route restored).
func (m *Mover) TakeOver(nic, adapter string) (time.Duration, error) {
	return m.move(nic, adapter, true, nil)
}

// TakeOverSaved is TakeOver of the identity saved before (Save): what the
// NIC had before any move began. It is idempotent, so a move cut short by
// a crash is finished by calling it again: addresses already on the
// adapter, or already gone from the NIC, are skipped.
func (m *Mover) TakeOverSaved(nic, adapter string, saved Saved) (time.Duration, error) {
	id, err := saved.identity()
	if err != nil {
		return 0, &StepError{"read the saved identity of " + nic, err}
	}
	return m.move(nic, adapter, true, &id)
}

// GiveBack moves adapter's identity (as it is now) back to nic and turns
// IPv6 on again there; adapter keeps its MAC until it is deleted.
func (m *Mover) GiveBack(adapter, nic string) (time.Duration, error) {
	return m.move(adapter, nic, false, nil)
}

func (m *Mover) move(from, to string, takeOver bool, given *Identity) (gap time.Duration, err error) {
	h, err := m.handle()
	if err != nil {
		return 0, &StepError{"open netlink", err}
	}
	defer h.Close()
	var undo undoStack
	defer func() {
		if err != nil {
			undo.run()
		}
	}()
	var id Identity
	if given != nil {
		id = *given
	} else if id, err = snapshot(h, from); err != nil {
		return 0, &StepError{"read " + from, err}
	}
	src, err := h.LinkByName(from)
	if err != nil {
		return 0, &StepError{"find " + from, err}
	}
	dst, err := h.LinkByName(to)
	if err != nil {
		return 0, &StepError{"find " + to, err}
	}
	if takeOver {
		old := dst.Attrs()
		if err := m.step("set MAC and MTU of "+to, func() error {
			if err := h.LinkSetHardwareAddr(dst, id.MAC); err != nil {
				return err
			}
			return h.LinkSetMTU(dst, id.MTU)
		}); err != nil {
			return 0, err
		}
		undo.push(func() { h.LinkSetHardwareAddr(dst, old.HardwareAddr); h.LinkSetMTU(dst, old.MTU) })
	} else {
		if err := m.step("turn IPv6 on at "+to, func() error { return m.setIPv6(to, true) }); err != nil {
			return 0, err
		}
		undo.push(func() { m.setIPv6(to, false) })
	}
	if err := m.step("bring "+to+" up", func() error { return h.LinkSetUp(dst) }); err != nil {
		return 0, err
	}
	start := time.Now()
	// Removing the addresses takes the routes through them. Their undo is
	// pushed first so that it runs last, once the addresses are back.
	undo.push(func() {
		for _, r := range id.Routes {
			r.LinkIndex = src.Attrs().Index
			h.RouteReplace(&r)
		}
	})
	for _, a := range id.Addrs {
		gone := false
		if err := m.step("remove "+a.IPNet.String()+" from "+from, func() error {
			err := h.AddrDel(src, &a)
			gone = errors.Is(err, unix.EADDRNOTAVAIL) // a move cut short had taken it already
			if gone {
				return nil
			}
			return err
		}); err != nil {
			return 0, err
		}
		if !gone {
			undo.push(func() { h.AddrAdd(src, &a) })
		}
	}
	for _, a := range id.Addrs {
		na := a
		na.Label = ""
		if na.IP.To4() == nil {
			na.Flags |= unix.IFA_F_NODAD // usable at once: the move must be short
		}
		there := false
		if err := m.step("add "+a.IPNet.String()+" to "+to, func() error {
			err := h.AddrAdd(dst, &na)
			there = errors.Is(err, unix.EEXIST)
			if there {
				return nil
			}
			return err
		}); err != nil {
			return 0, err
		}
		if !there {
			undo.push(func() { h.AddrDel(dst, &na) })
		}
	}
	for _, r := range id.Routes {
		nr := r
		nr.LinkIndex = dst.Attrs().Index
		if err := m.step("add route "+routeString(r)+" to "+to, func() error { return h.RouteReplace(&nr) }); err != nil {
			return 0, err
		}
		undo.push(func() { h.RouteDel(&nr) })
	}
	gap = time.Since(start)
	if takeOver {
		if err := m.step("turn IPv6 off at "+from, func() error { return m.setIPv6(from, false) }); err != nil {
			return 0, err
		}
	}
	return gap, nil
}

// step runs one named step of a move: the Step hook first, then f (or
// the failure injected at it); an error comes back as a *StepError.
func (m *Mover) step(name string, f func() error) error {
	if m.Step != nil {
		m.Step(name)
	}
	if m.failAt == name {
		return &StepError{name, errors.New("injected failure")}
	}
	if err := f(); err != nil {
		return &StepError{name, err}
	}
	return nil
}

func routeString(r netlink.Route) string {
	dst := "default"
	if r.Dst != nil {
		if ones, _ := r.Dst.Mask.Size(); ones > 0 {
			dst = r.Dst.String()
		}
	}
	if r.Gw != nil {
		return dst + " via " + r.Gw.String()
	}
	return dst
}

// setIPv6 writes net.ipv6.conf.LINK.disable_ipv6 in the namespace.
func (m *Mover) setIPv6(link string, on bool) error {
	v := "1"
	if on {
		v = "0"
	}
	return nsrun.In(nsrun.Path(m.Namespace), func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/disable_ipv6", []byte(v), 0)
	})
}

// IPv6Off reports whether IPv6 is off on a link.
func (m *Mover) IPv6Off(link string) (bool, error) {
	var off bool
	err := nsrun.In(nsrun.Path(m.Namespace), func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + link + "/disable_ipv6")
		off = len(b) > 0 && b[0] == '1'
		return err
	})
	return off, err
}

// String renders an identity for comparisons in tests and logs.
func (id Identity) String() string {
	s := fmt.Sprintf("mac %s mtu %d", id.MAC, id.MTU)
	var parts []string
	for _, a := range id.Addrs {
		parts = append(parts, "addr "+a.IPNet.String())
	}
	for _, r := range id.Routes {
		parts = append(parts, fmt.Sprintf("route %s metric %d table %d", routeString(r), r.Priority, r.Table))
	}
	slices.Sort(parts)
	for _, p := range parts {
		s += "\n" + p
	}
	return s
}
