// Package tap attaches a switch port to a Linux TAP device: a workload's
// eth0 inside its network namespace, or the host adapter named after its
// switch in the host's namespace. The device is persistent: vswitchd holds
// its file descriptor, and a restarted vswitchd re-attaches to it without
// touching the addresses the workload has set.
package tap

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/fdio"
)

// DefaultName is the device name a workload sees.
const DefaultName = "eth0"

// Config says which TAP to open and how to set it up.
type Config struct {
	Name      string    // device name inside its namespace; DefaultName if ""
	Namespace string    // nsrun.Path spec: name, path or PID; "" is the caller's namespace
	MAC       frame.MAC // set when not zero
	MTU       int       // set when not 0
	BatchSize int       // frames per Read; 64 if 0
	// NoOffloads makes a plain TAP: no virtio-net header, and the kernel
	// hands over only wire-sized frames with complete checksums. By
	// default the TAP carries virtio-net headers and takes (and gives)
	// partial checksums and TCP/UDP super-frames of up to 64 KiB.
	NoOffloads bool
	// Mark, if set, becomes the link's alias when Open creates the device
	// (with Adopt, also on an existing device that has no alias), so that
	// RemoveMarked deletes only devices its owner made.
	Mark  string
	Adopt bool
}

// ErrNotMarked: RemoveMarked found a device that is not its caller's.
var ErrNotMarked = errors.New("not made by vswitch (no mark): left alone")

// Offload flags of TUNSETOFFLOAD (linux/if_tun.h).
const (
	tunFCsum   = 0x01
	tunFTSO4   = 0x02
	tunFTSO6   = 0x04
	tunFTSOECN = 0x08
	tunFUSO4   = 0x20
	tunFUSO6   = 0x40
)

// Port is an open TAP device. It implements l2.Port.
type Port struct {
	fd      *fdio.FD
	name    string
	nsPath  string
	batch   int
	created bool
	feat    offload.Features
	closed  atomic.Bool
	r       *fdio.Reader
	w       *fdio.Writer
}

// Open creates the TAP (or attaches to it if it exists, leaving its
// addresses alone), makes it persistent, sets MAC and MTU if asked, and
// brings it up. On error nothing it created is left behind.
func Open(c Config) (*Port, error) {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if len(c.Name) > unix.IFNAMSIZ-1 {
		return nil, fmt.Errorf("tap: name %q is longer than %d bytes", c.Name, unix.IFNAMSIZ-1)
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 64
	}
	p := &Port{name: c.Name, nsPath: nsrun.Path(c.Namespace), batch: c.BatchSize}
	var fd int
	err := nsrun.In(p.nsPath, func() (err error) {
		_, lookupErr := netlink.LinkByName(c.Name)
		p.created = lookupErr != nil
		fd, p.feat, err = openTun(c.Name, !c.NoOffloads)
		return err
	})
	if err != nil {
		return nil, err
	}
	if p.fd, err = fdio.NewFD(fd, "tap:"+c.Name); err != nil {
		if p.created {
			remove(p.nsPath, c.Name) // persistent: it would outlive its closed descriptor
		}
		return nil, err
	}
	if err = p.configure(c); err != nil {
		if p.created {
			p.unpersist()
		}
		p.fd.Close()
		return nil, err
	}
	hdr, send := 0, write
	if p.feat&offload.Vnet != 0 {
		hdr, send = offload.VnetHdrLen, writeVnet
	}
	p.r = fdio.NewReader(p.fd, fdio.Read, 0, hdr)
	p.w = fdio.NewWriter(p.fd, send, "write")
	return p, nil
}

// openTun opens /dev/net/tun and attaches it to the TAP called name in the
// current namespace, creating the device if needed, and makes it
// persistent. With offloads it turns on virtio-net headers and tells the
// kernel which offloads the reader takes (USO only where the kernel has
// it); without, it turns them off, also on a device left with them on.
func openTun(name string, offloads bool) (int, offload.Features, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, 0, fdio.OpError("open", fdio.Addr{Net: "tap", Name: name}, false, os.NewSyscallError("open /dev/net/tun", err))
	}
	feat, err := setupTun(fd, name, offloads)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fdio.OpError("open", fdio.Addr{Net: "tap", Name: name}, false, err)
	}
	return fd, feat, nil
}

func setupTun(fd int, name string, offloads bool) (offload.Features, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if offloads {
		flags |= unix.IFF_VNET_HDR
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return 0, os.NewSyscallError("ioctl TUNSETIFF (is there a non-TAP device of that name?)", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		return 0, os.NewSyscallError("ioctl TUNSETPERSIST", err)
	}
	if !offloads {
		return 0, os.NewSyscallError("ioctl TUNSETOFFLOAD", unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, 0))
	}
	tcp := tunFCsum | tunFTSO4 | tunFTSO6 | tunFTSOECN
	if unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp|tunFUSO4|tunFUSO6) == nil {
		return offload.All, nil
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tcp); err != nil { // a kernel before 6.2: no USO
		return 0, os.NewSyscallError("ioctl TUNSETOFFLOAD", err)
	}
	return offload.Vnet | offload.Csum | offload.TSO, nil
}

// configure sets MAC and MTU when they differ, and brings the device up.
func (p *Port) configure(c Config) error {
	return withHandle(p.nsPath, p.name, func(h *netlink.Handle) error {
		l, err := h.LinkByName(p.name)
		if err != nil {
			return fmt.Errorf("tap %s: find link: %w", p.name, err)
		}
		if !c.MAC.IsZero() && frame.MAC(l.Attrs().HardwareAddr) != c.MAC {
			if err := h.LinkSetHardwareAddr(l, c.MAC[:]); err != nil {
				return fmt.Errorf("tap %s: set MAC %s: %w", p.name, c.MAC, err)
			}
		}
		if c.Mark != "" && l.Attrs().Alias != c.Mark && (p.created || c.Adopt && l.Attrs().Alias == "") {
			if err := h.LinkSetAlias(l, c.Mark); err != nil {
				return fmt.Errorf("tap %s: mark as %q: %w", p.name, c.Mark, err)
			}
		}
		if c.MTU != 0 && l.Attrs().MTU != c.MTU {
			if err := h.LinkSetMTU(l, c.MTU); err != nil {
				return fmt.Errorf("tap %s: set MTU %d: %w", p.name, c.MTU, err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("tap %s: set up: %w", p.name, err)
		}
		return nil
	})
}

// withHandle runs fn with a netlink handle in the namespace at nsPath.
func withHandle(nsPath, name string, fn func(*netlink.Handle) error) error {
	h, err := nsrun.Netlink(nsPath)
	if err != nil {
		return fmt.Errorf("tap %s: netlink in %q: %w", name, nsPath, err)
	}
	defer h.Close()
	return fn(h)
}

// Name returns the device's name in its namespace.
func (p *Port) Name() string { return p.name }

// Created reports whether Open made the device (false: it re-attached).
func (p *Port) Created() bool { return p.created }

// Truncated returns how many frames were dropped for not fitting a read buffer.
func (p *Port) Truncated() uint64 { return p.r.Dropped() }

// BackendCounters implements l2.CountingPort: "truncated".
func (p *Port) BackendCounters() map[string]uint64 {
	return map[string]uint64{"truncated": p.Truncated()}
}

// Offloads implements l2.Port: offload.All (or without USO on an older
// kernel), or none for a TAP opened with NoOffloads.
func (p *Port) Offloads() offload.Features { return p.feat }

// BatchSize implements l2.Port.
func (p *Port) BatchSize() int { return p.batch }

// Read implements l2.Port: it waits (in the runtime's poller) for the
// device to be readable and reads frames until none is left or the batch
// is full.
func (p *Port) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := p.r.Read(bufs, sizes, offset)
	if err != nil {
		return n, p.opError("read", err)
	}
	return n, nil
}

// ReadNow implements l2.PollPort: Read without waiting.
func (p *Port) ReadNow(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := p.r.ReadNow(bufs, sizes, offset)
	if err != nil {
		return n, p.opError("read", err)
	}
	return n, nil
}

// PollFD implements l2.PollPort: the device's descriptor, for a forwarding
// thread to wait on.
func (p *Port) PollFD() int { return p.fd.PollFD() }

// Write implements l2.Port: one write(2) per frame (a super-frame is one
// frame), never waiting; a full device queue (EAGAIN) drops the rest of the
// batch.
func (p *Port) Write(bufs [][]byte, offsets []int) (int, error) {
	n, err := p.w.Write(bufs, offsets)
	if err != nil {
		return n, p.opError("write", err)
	}
	return n, nil
}

func write(fd int, b []byte, off int) error {
	_, err := fdio.Write(fd, b[off:])
	return err
}

// writeVnet writes the frame with the virtio-net header the switch put in front of it.
func writeVnet(fd int, b []byte, off int) error {
	if off < offload.VnetHdrLen {
		return unix.EINVAL // the switch guarantees l2.WriteHeadroom
	}
	_, err := fdio.Write(fd, b[off-offload.VnetHdrLen:])
	return err
}

func (p *Port) opError(op string, err error) error {
	return fdio.OpError(op, fdio.Addr{Net: "tap", Name: p.name}, p.closed.Load(), err)
}

// Close implements l2.Port: it detaches from the device, which stays (it
// is persistent) with its addresses, for a later Open to re-attach.
func (p *Port) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return p.fd.Close()
}

// Delete removes the device: the workload loses its interface. It works
// whether or not the port is still open.
func (p *Port) Delete() error {
	if !p.closed.Load() {
		p.unpersist()
		return p.Close() // a non-persistent TAP goes with its last descriptor
	}
	return remove(p.nsPath, p.name)
}

// Remove deletes the TAP called name in a namespace (an nsrun.Path spec),
// for a caller that no longer has the port; a missing device is not an error.
func Remove(namespace, name string) error {
	if name == "" {
		name = DefaultName
	}
	return remove(nsrun.Path(namespace), name)
}

// RemoveMarked is Remove of a device that carries mark as its alias; any
// other device of that name is left alone (ErrNotMarked).
func RemoveMarked(namespace, name, mark string) error {
	if name == "" {
		name = DefaultName
	}
	return removeIf(nsrun.Path(namespace), name, mark)
}

func remove(nsPath, name string) error { return removeIf(nsPath, name, "") }

func removeIf(nsPath, name, mark string) error {
	return withHandle(nsPath, name, func(h *netlink.Handle) error {
		l, err := h.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) {
				return nil
			}
			return fmt.Errorf("tap %s: find link: %w", name, err)
		}
		switch {
		case mark != "" && (l.Type() != "tuntap" || l.Attrs().Alias != mark):
			return fmt.Errorf("tap %s: a %s device with alias %q: %w", name, l.Type(), l.Attrs().Alias, ErrNotMarked)
		case l.Type() != "tuntap":
			return fmt.Errorf("tap %s: is a %s device, not a TAP: left alone", name, l.Type())
		}
		return h.LinkDel(l)
	})
}

func (p *Port) unpersist() {
	p.fd.Control(func(fd uintptr) { unix.IoctlSetInt(int(fd), unix.TUNSETPERSIST, 0) })
}
