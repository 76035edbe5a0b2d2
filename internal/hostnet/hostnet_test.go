package hostnet

import (
	"errors"
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/tap"
)

// host makes a namespace playing the host: nic0 (a veth to a "LAN"
// namespace) with IPv4 and IPv6 addresses, a default route per family and
// a static route with a metric, and an external switch's host adapter ext0.
func host(t *testing.T) (*netnstest.NS, *Mover) {
	ns, lan := netnstest.New(t), netnstest.New(t)
	netnstest.Veth(t, ns, "nic0", lan, "eth0")
	p, err := tap.Open(tap.Config{Namespace: ns.Name, Name: "ext0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Delete() })
	ns.AddAddr(t, "nic0", "192.0.2.10/24")
	nic := ns.Link(t, "nic0")
	if err := ns.Do(func() error {
		v6, _ := netlink.ParseAddr("2001:db8::10/64")
		v6.Flags = unix.IFA_F_NODAD
		if err := netlink.AddrAdd(nic, v6); err != nil {
			return err
		}
		_, static, _ := net.ParseCIDR("198.51.100.0/24")
		for _, r := range []netlink.Route{
			{LinkIndex: nic.Attrs().Index, Gw: net.ParseIP("192.0.2.1"), Priority: 100},
			{LinkIndex: nic.Attrs().Index, Dst: static, Gw: net.ParseIP("192.0.2.254"), Priority: 50},
			{LinkIndex: nic.Attrs().Index, Gw: net.ParseIP("2001:db8::1"), Priority: 1024},
		} {
			if err := netlink.RouteAdd(&r); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ns, &Mover{Namespace: ns.Name}
}

func snap(t *testing.T, m *Mover, link string) Identity {
	t.Helper()
	id, err := m.Snapshot(link)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestTakeOverAndGiveBack(t *testing.T) {
	_, m := host(t)
	before := snap(t, m, "nic0")
	if len(before.Addrs) != 2 || len(before.Routes) != 3 {
		t.Fatalf("the test host is not set up as meant:\n%s", before)
	}
	gap, err := m.TakeOver("nic0", "ext0")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("interruption: %v", gap)
	if got := snap(t, m, "ext0"); got.String() != before.String() {
		t.Fatalf("host adapter after the take-over:\n%s\nwant the NIC's identity:\n%s", got, before)
	}
	if got := snap(t, m, "nic0"); len(got.Addrs) != 0 || len(got.Routes) != 0 {
		t.Fatalf("the NIC kept an identity:\n%s", got)
	}
	if off, _ := m.IPv6Off("nic0"); !off {
		t.Fatal("IPv6 still on at the NIC")
	}
	if _, err := m.GiveBack("ext0", "nic0"); err != nil {
		t.Fatal(err)
	}
	if got := snap(t, m, "nic0"); got.String() != before.String() {
		t.Fatalf("NIC after giving back:\n%s\nwant as before:\n%s", got, before)
	}
	if off, _ := m.IPv6Off("nic0"); off {
		t.Fatal("IPv6 still off at the NIC")
	}
}

// A failure at any step of a take-over leaves the host exactly as before.
func TestTakeOverRollsBack(t *testing.T) {
	for _, stepName := range []string{
		"set MAC and MTU of ext0", "remove 2001:db8::10/64 from nic0", "add 192.0.2.10/24 to ext0",
		"add 2001:db8::10/64 to ext0", "add route 198.51.100.0/24 via 192.0.2.254 to ext0",
		"add route default via 2001:db8::1 to ext0", "turn IPv6 off at nic0",
	} {
		t.Run(stepName, func(t *testing.T) {
			_, m := host(t)
			nicBefore, adapterBefore := snap(t, m, "nic0"), snap(t, m, "ext0")
			m.failAt = stepName
			_, err := m.TakeOver("nic0", "ext0")
			var se *StepError
			if !errors.As(err, &se) || se.Step != stepName {
				t.Fatalf("TakeOver = %v, want a failure at %q", err, stepName)
			}
			if got := snap(t, m, "nic0"); got.String() != nicBefore.String() {
				t.Fatalf("NIC after the failed take-over:\n%s\nwant as before:\n%s", got, nicBefore)
			}
			if got := snap(t, m, "ext0"); got.String() != adapterBefore.String() {
				t.Fatalf("host adapter after the failed take-over:\n%s\nwant as before:\n%s", got, adapterBefore)
			}
			if off, _ := m.IPv6Off("nic0"); off {
				t.Fatal("IPv6 left off at the NIC")
			}
		})
	}
}
