// Package netnstest gives privileged tests throw-away network namespaces,
// veth pairs, addresses, and ping and TCP from inside a namespace, without
// any tool outside the test binary. Everything a test creates is removed in
// t.Cleanup, also when the test fails; without root the test is skipped
// with the missing privilege named.
package netnstest

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/nsrun"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces, veths and TAPs; CI runs it as root")
	}
}

var seq atomic.Uint32

// UniqueName returns a name no other test of this or another process uses,
// short enough for an interface name (at most 15 bytes).
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%x%x", prefix, os.Getpid()&0xffff, seq.Add(1))
}

// NS is a network namespace made for one test.
type NS struct {
	Name string // as in `ip netns list`
	Path string // /run/netns/Name
}

// shareRunNetns makes /run/netns a shared mount, as `ip netns add` does
// before its first namespace: a namespace named later then shows in the
// mount namespaces made before it (a daemon under test started with `ip
// netns exec` has one of its own). On a fresh host, where no `ip netns
// add` ran yet, the test's namespaces would be invisible there.
var shareRunNetns = sync.OnceValue(func() error {
	const dir = "/run/netns"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == unix.EINVAL { // not a mount point yet: make it one
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	return err
})

// New makes a named namespace with its loopback up, deleted when the test ends.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	if err := shareRunNetns(); err != nil {
		t.Fatalf("make /run/netns a shared mount (as ip netns add does): %v", err)
	}
	name := UniqueName("vst")
	errc := make(chan error, 1)
	go func() {
		// NewNamed moves the calling thread into the new namespace: the
		// thread stays locked and dies with this goroutine.
		runtime.LockOSThread()
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	ns := &NS{Name: name, Path: nsrun.Path(name)}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	lo := ns.Link(t, "lo")
	ns.handle(t, func(h *netlink.Handle) error { return h.LinkSetUp(lo) })
	return ns
}

// NoIPv6 turns IPv6 off in the namespace, for its interfaces now and to
// come: a test that counts the frames on a link does not want the
// kernel's router solicitations and multicast listener reports among them.
func (n *NS) NoIPv6(t testing.TB) {
	t.Helper()
	if err := n.Do(func() error {
		for _, conf := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+conf+"/disable_ipv6", []byte("1"), 0); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("turn IPv6 off in %s: %v", n.String(), err)
	}
}

// Do runs fn on a thread inside the namespace; a nil NS is the host's.
func (n *NS) Do(fn func() error) error {
	if n == nil {
		return nsrun.In("", fn)
	}
	return nsrun.In(n.Path, fn)
}

// handle runs fn with a netlink handle bound to the namespace (the host's for nil).
func (n *NS) handle(t testing.TB, fn func(*netlink.Handle) error) {
	t.Helper()
	path := ""
	if n != nil {
		path = n.Path
	}
	h, err := nsrun.Netlink(path)
	if err != nil {
		t.Fatalf("netlink handle for %s: %v", n.String(), err)
	}
	defer h.Close()
	if err := fn(h); err != nil {
		t.Fatalf("netlink in %s: %v", n.String(), err)
	}
}

func (n *NS) String() string {
	if n == nil {
		return "the host namespace"
	}
	return "namespace " + n.Name
}

// Link returns the named link of the namespace.
func (n *NS) Link(t testing.TB, name string) netlink.Link {
	t.Helper()
	var l netlink.Link
	n.handle(t, func(h *netlink.Handle) (err error) {
		l, err = h.LinkByName(name)
		return err
	})
	return l
}

// Veth makes a veth pair, one end named aName in a and the other bName in
// b (nil for the host namespace), both up. A host end's name must be
// unique: use UniqueName. The pair is deleted when the test ends.
func Veth(t testing.TB, a *NS, aName string, b *NS, bName string) {
	t.Helper()
	RequireRoot(t)
	tmpA, tmpB := UniqueName("vta"), UniqueName("vtb")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tmpA}, PeerName: tmpB}); err != nil {
		t.Fatalf("create veth %s/%s: %v", tmpA, tmpB, err)
	}
	t.Cleanup(func() { // deleting either end deletes the pair, wherever it is
		a.handle(t, func(h *netlink.Handle) error {
			if l, err := h.LinkByName(aName); err == nil {
				return h.LinkDel(l)
			}
			return nil
		})
	})
	for _, end := range []struct {
		tmp, name string
		ns        *NS
	}{{tmpA, aName, a}, {tmpB, bName, b}} {
		l, err := netlink.LinkByName(end.tmp)
		if err != nil {
			t.Fatalf("find %s: %v", end.tmp, err)
		}
		if end.ns != nil {
			nh, err := netns.GetFromPath(end.ns.Path)
			if err != nil {
				t.Fatal(err)
			}
			err = netlink.LinkSetNsFd(l, int(nh))
			nh.Close()
			if err != nil {
				t.Fatalf("move %s to %s: %v", end.tmp, end.ns, err)
			}
		}
		end.ns.handle(t, func(h *netlink.Handle) error {
			l, err := h.LinkByName(end.tmp)
			if err != nil {
				return err
			}
			if err := h.LinkSetName(l, end.name); err != nil {
				return err
			}
			return h.LinkSetUp(l)
		})
	}
}

// AddAddr puts an address such as "10.0.0.1/24" or "fd00::1/64" on a link
// and brings it up; an IPv6 address is usable at once (no duplicate
// address detection to wait for).
func (n *NS) AddAddr(t testing.TB, link, cidr string) {
	t.Helper()
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if addr.IP.To4() == nil {
		addr.Flags |= unix.IFA_F_NODAD
	}
	l := n.Link(t, link)
	n.handle(t, func(h *netlink.Handle) error {
		if err := h.AddrAdd(l, addr); err != nil {
			return fmt.Errorf("add %s to %s: %w", cidr, link, err)
		}
		return h.LinkSetUp(l)
	})
}

// Addrs returns a link's IPv4 and IPv6 addresses, as "10.0.0.1/24".
func (n *NS) Addrs(t testing.TB, link string) []string {
	t.Helper()
	l := n.Link(t, link)
	var out []string
	n.handle(t, func(h *netlink.Handle) error {
		as, err := h.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range as {
			out = append(out, a.IPNet.String())
		}
		return err
	})
	return out
}

// Listen opens a TCP listener inside the namespace.
func (n *NS) Listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := n.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, n, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Dial opens a TCP connection from inside the namespace.
func (n *NS) Dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := n.Do(func() (err error) { c, err = net.Dial("tcp", addr); return err }); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, n, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ListenPacket opens a packet socket (e.g. "ip4:icmp", "udp4") inside the namespace.
func (n *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	if err := n.Do(func() (err error) { c, err = net.ListenPacket(network, addr); return err }); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, n, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
