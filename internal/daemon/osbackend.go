package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/hostnet"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/qemu"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/sockfile"
)

// Mark is the alias vswitchd gives the TAPs it makes: it removes only
// TAPs that carry it, and no switch takes one as its uplink.
const Mark = "vswitch"

// OSBackend opens real ports: a packet socket on the uplink NIC or on a
// QEMU-owned TAP, a TAP for the host adapter or inside a VM's namespace,
// and unix sockets for QEMU.
type OSBackend struct {
	// Namespace is where the host side lives (uplinks, host adapters, QEMU
	// TAPs): "" for vswitchd's own namespace; tests run a daemon in one of theirs.
	Namespace string
	// Step, if set, is called before every host step (crash tests).
	Step func(step string)
}

func (b OSBackend) step(name string) {
	if b.Step != nil {
		b.Step(name)
	}
}

// notYet marks an error from a namespace that does not exist yet.
func notYet(err error) error {
	if errors.Is(err, nsrun.ErrNoNamespace) {
		return fmt.Errorf("%w: %w", ErrNotYet, err)
	}
	return err
}

// Open implements Backend.
func (b OSBackend) Open(s PortSpec) (l2.Port, error) {
	b.step("open " + s.Kind + " " + s.Name)
	switch s.Kind {
	case KindUplink:
		return afpacket.Open(afpacket.Config{Interface: s.Device, Namespace: b.Namespace})
	case KindTunnel:
		if err := b.tunnel(s); err != nil {
			return nil, err
		}
		p, err := afpacket.Open(afpacket.Config{Interface: s.Device, Namespace: b.Namespace})
		if err != nil {
			return nil, err
		}
		return &tunnelPort{Port: p, ns: b.Namespace, dev: s.Device}, nil
	case KindJoin: // the core's end of a kernel switch's join (OpenDevice made it)
		return afpacket.Open(afpacket.Config{Interface: joinCoreEnd(s), Namespace: b.Namespace})
	case string(config.AttachTAP):
		if err := b.qemuTAP(s.Device); err != nil {
			return nil, err
		}
		return afpacket.Open(afpacket.Config{Interface: s.Device, Namespace: b.Namespace})
	case KindHost:
		return tap.Open(tap.Config{Name: s.Device, Namespace: b.Namespace, MAC: s.MAC, MTU: s.MTU, Mark: Mark, Adopt: true})
	case string(config.AttachNetns):
		p, err := tap.Open(tap.Config{Name: s.Device, Namespace: s.Namespace, MAC: s.MAC, MTU: s.MTU, Mark: Mark, Adopt: true})
		if err == nil && s.Announce {
			announce(s.Namespace, s.Device, s.MAC) // queued in the TAP until the switch reads it
		}
		return p, notYet(err)
	case string(config.AttachQEMUStream), string(config.AttachQEMUDgram):
		if err := os.MkdirAll(filepath.Dir(s.Socket), 0o700); err != nil {
			return nil, err
		}
		c := qemu.Config{Path: s.Socket}
		if s.Kind == string(config.AttachQEMUStream) {
			return qemu.ListenStream(c)
		}
		return qemu.ListenDgram(c)
	}
	return nil, fmt.Errorf("unknown port kind %q", s.Kind)
}

// Remove implements Backend: TAP devices vswitchd made are deleted (one
// it did not make, or anything that is not a TAP, is left alone) and
// stale socket files removed (a socket another process serves is not);
// NICs stay.
func (b OSBackend) Remove(s PortSpec) error {
	b.step("remove " + s.Kind + " " + s.Name)
	var err error
	switch {
	case s.Kernel && s.Kind == KindUplink:
		b.withLink(s.Device, func(h *netlink.Handle, l netlink.Link) error { return h.SetPromiscOff(l) }) // a NIC that went needs nothing
		return nil
	case s.Kind == KindTunnel:
		return b.removeTunnel(s.Device)
	case s.Kernel && (s.Kind == KindHost || s.Kind == KindJoin):
		return removeVeth(b.Namespace, s.Device)
	case s.Kernel && s.Kind == string(config.AttachNetns):
		return removeVeth(s.Namespace, s.Device)
	}
	switch s.Kind {
	case KindHost, string(config.AttachTAP):
		err = tap.RemoveMarked(b.Namespace, s.Device, Mark)
	case string(config.AttachNetns):
		err = tap.RemoveMarked(s.Namespace, s.Device, Mark)
		if errors.Is(err, nsrun.ErrNoNamespace) {
			return nil // the namespace went, and the TAP with it
		}
	case string(config.AttachQEMUStream), string(config.AttachQEMUDgram):
		err = sockfile.RemoveStale(s.Socket)
		if errors.Is(err, sockfile.ErrInUse) || errors.Is(err, sockfile.ErrNotSocket) {
			return nil // another process's: never removed
		}
	}
	if errors.Is(err, tap.ErrNotMarked) {
		return nil
	}
	return err
}

// SaveIdentity implements Backend with hostnet.
func (b OSBackend) SaveIdentity(nic string) ([]byte, error) {
	b.step("save identity of " + nic)
	m := hostnet.Mover{Namespace: b.Namespace}
	s, err := m.Save(nic)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// TakeOver implements Backend with hostnet.
func (b OSBackend) TakeOver(nic, hostAdapter string, saved []byte) (time.Duration, error) {
	var s hostnet.Saved
	if err := json.Unmarshal(saved, &s); err != nil {
		return 0, fmt.Errorf("saved identity of %s: %w", nic, err)
	}
	m := hostnet.Mover{Namespace: b.Namespace, Step: b.Step}
	if hostAdapter == "" {
		return 0, m.StripSaved(nic, s)
	}
	return m.TakeOverSaved(nic, hostAdapter, s)
}

// GiveBack implements Backend with hostnet.
func (b OSBackend) GiveBack(hostAdapter, nic string, saved []byte) error {
	m := hostnet.Mover{Namespace: b.Namespace, Step: b.Step}
	if saved == nil {
		_, err := m.GiveBack(hostAdapter, nic)
		return err
	}
	var s hostnet.Saved
	if err := json.Unmarshal(saved, &s); err != nil {
		return fmt.Errorf("saved identity of %s: %w", nic, err)
	}
	return m.GiveBackSaved(hostAdapter, nic, s)
}

// CheckNIC reports whether name can be an uplink where the host side
// lives: an existing interface that is not the loopback and not one that
// vswitchd made (a host adapter or a TAP of its own).
func (b OSBackend) CheckNIC(name string) error {
	l, err := b.link(name)
	if err != nil {
		return fmt.Errorf("no such interface")
	}
	return uplinkable(l)
}

// uplinkable is CheckNIC's rule for a link.
func uplinkable(l netlink.Link) error {
	switch {
	case l.Attrs().Flags&net.FlagLoopback != 0:
		return fmt.Errorf("%s is the loopback interface", l.Attrs().Name)
	case l.Attrs().Alias == Mark:
		return fmt.Errorf("%s is an interface of vswitch (a host adapter or a TAP it made)", l.Attrs().Name)
	}
	return nil
}

// NICs names the interfaces where the host side lives that CheckNIC takes.
func (b OSBackend) NICs() ([]string, error) {
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, l := range links {
		if uplinkable(l) == nil {
			out = append(out, l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// MAC returns a link's MAC address where the host side lives.
func (b OSBackend) MAC(name string) (frame.MAC, error) {
	l, err := b.link(name)
	if err != nil {
		return frame.MAC{}, err
	}
	var m frame.MAC
	copy(m[:], l.Attrs().HardwareAddr)
	return m, nil
}

// qemuTAP makes a persistent TAP for QEMU if it is not there yet (marked
// as vswitch's only then), so that its host side can be bound now and QEMU
// attaches to it by name whenever the VM runs. A TAP of ours that a QEMU
// holds already (its VM runs, adopted after a restart) is taken as it is.
func (b OSBackend) qemuTAP(name string) error {
	t, err := tap.Open(tap.Config{Name: name, Namespace: b.Namespace, Mark: Mark})
	switch {
	case errors.Is(err, unix.EBUSY) && b.isOurs(name):
		return nil
	case err != nil:
		return err
	}
	t.Close() // the TAP stays: it is persistent
	return nil
}

// isOurs reports whether a link where the host side lives carries Mark.
func (b OSBackend) isOurs(name string) bool {
	l, err := b.link(name)
	return err == nil && l.Attrs().Alias == Mark
}

// link looks a link up where the host side lives.
func (b OSBackend) link(name string) (netlink.Link, error) {
	h, err := nsrun.Netlink(nsrun.Path(b.Namespace))
	if err != nil {
		return nil, err
	}
	defer h.Close()
	return h.LinkByName(name)
}
