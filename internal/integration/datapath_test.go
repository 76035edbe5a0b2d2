package integration

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/kdp"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vlan"
)

// testSwitch is a switch of a guest test on one data path, with its ports
// made the way vswitchd makes them there: on the userspace core a guest
// has a QEMU stream socket and a namespace VM a TAP; on the kernel data
// path a guest has a TAP that QEMU opens (the program at its ingress) and
// a namespace VM a veth pair.
type testSwitch interface {
	// guest gives a guest a port and returns its NIC and the namespace
	// QEMU must run in ("": the test's).
	guest(t *testing.T, name string, typ config.AdapterType, mac frame.MAC, cfg l2.PortConfig) (guestlab.NIC, string)
	// station is a namespace VM whose eth0 at cidr is the port name.
	station(t *testing.T, name, cidr string, cfg l2.PortConfig) *vm
	// hostAdapter is the host's adapter on the switch: dev in host, the
	// switch's namespace on the kernel data path.
	hostAdapter(t *testing.T, host *netnstest.NS, dev string)
	counters(t *testing.T, port string) l2.Counters
}

// dataPaths are the data paths the guest tests run on, each making the
// switches of one test (in one namespace, the kernel path's).
var dataPaths = []struct {
	name string
	make func(t *testing.T) func(name string) testSwitch
}{
	{"userspace", func(t *testing.T) func(string) testSwitch {
		return func(name string) testSwitch { return coreSwitch{newSwitch(t, name)} }
	}},
	{"kernel", func(t *testing.T) func(string) testSwitch {
		host := netnstest.New(t)
		host.NoIPv6(t)
		dp, err := kdp.Open(kdp.Options{Namespace: host.Name, FDBSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dp.Close() })
		return func(name string) testSwitch {
			if err := dp.SetSwitch(name, 0, 0); err != nil {
				t.Fatal(err)
			}
			return &kernelSwitch{dp: dp, host: host, name: name, ifnames: map[string]string{}}
		}
	}},
}

// onBothPaths runs a guest test on each data path.
func onBothPaths(t *testing.T, test func(t *testing.T, newSwitch func(name string) testSwitch)) {
	for _, dp := range dataPaths {
		t.Run(dp.name, func(t *testing.T) { test(t, dp.make(t)) })
	}
}

// coreSwitch is the userspace core.
type coreSwitch struct{ sw *l2.Switch }

func (c coreSwitch) guest(t *testing.T, name string, typ config.AdapterType, mac frame.MAC, cfg l2.PortConfig) (guestlab.NIC, string) {
	return guestlab.NIC{Type: typ, MAC: mac, Socket: guestPort(t, c.sw, name, mac, cfg)}, ""
}

func (c coreSwitch) station(t *testing.T, name, cidr string, cfg l2.PortConfig) *vm {
	return addVM(t, c.sw, name, cidr, cfg)
}

func (c coreSwitch) hostAdapter(t *testing.T, host *netnstest.NS, dev string) {
	ha, err := tap.Open(tap.Config{Namespace: host.Name, Name: dev})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ha.Delete() })
	if err := c.sw.AddPort("host", ha, l2.PortConfig{}); err != nil {
		t.Fatal(err)
	}
}

func (c coreSwitch) counters(t *testing.T, port string) l2.Counters {
	n, err := c.sw.Counters(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// kernelSwitch is a switch of the kernel data path, its switch-side
// devices in the data path's namespace.
type kernelSwitch struct {
	dp      *kdp.Datapath
	host    *netnstest.NS
	name    string
	ifnames map[string]string // port → switch-side interface
}

// add puts a switch-side interface on the switch as port name.
func (k *kernelSwitch) add(t *testing.T, name, ifname string, cfg l2.PortConfig) {
	if err := k.dp.AddPort(ifname, kdp.PortConfig{Switch: k.name, VLAN: vlanOrUntagged(cfg), MAC: cfg.MAC, SpoofGuard: cfg.SpoofGuard}); err != nil {
		t.Fatal(err)
	}
	k.ifnames[name] = ifname
}

func (k *kernelSwitch) guest(t *testing.T, name string, typ config.AdapterType, mac frame.MAC, cfg l2.PortConfig) (guestlab.NIC, string) {
	dev := netnstest.UniqueName("gt")
	p, err := tap.Open(tap.Config{Namespace: k.host.Name, Name: dev})
	if err != nil {
		t.Fatal(err)
	}
	p.Close() // persistent and up: QEMU opens it by name; it goes with the namespace
	cfg.MAC, cfg.SpoofGuard = mac, true
	k.add(t, name, dev, cfg)
	return guestlab.NIC{Type: typ, MAC: mac, TAP: dev}, k.host.Name
}

func (k *kernelSwitch) station(t *testing.T, name, cidr string, cfg l2.PortConfig) *vm {
	ns := netnstest.New(t)
	ns.NoIPv6(t)
	dev := netnstest.UniqueName("vk")
	netnstest.Veth(t, ns, "eth0", k.host, dev)
	if !cfg.MAC.IsZero() {
		if err := ns.Do(func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetHardwareAddr(l, net.HardwareAddr(cfg.MAC[:]))
		}); err != nil {
			t.Fatal(err)
		}
	}
	k.add(t, name, dev, cfg)
	ns.AddAddr(t, "eth0", cidr)
	ip, _, _ := net.ParseCIDR(cidr)
	return &vm{ns: ns, port: name, ip: ip.String()}
}

func (k *kernelSwitch) hostAdapter(t *testing.T, host *netnstest.NS, dev string) {
	side := netnstest.UniqueName("vk")
	netnstest.Veth(t, host, dev, k.host, side)
	k.add(t, "host", side, l2.PortConfig{})
}

func (k *kernelSwitch) counters(t *testing.T, port string) l2.Counters {
	c, err := k.dp.Counters(k.ifnames[port])
	if err != nil {
		t.Fatal(err)
	}
	return daemon.KernelCounters(c)
}

// vlanOrUntagged is a port config's 802.1Q model, untagged in VLAN 1 if
// unset (as the core defaults a port to its switch's default VLAN).
func vlanOrUntagged(cfg l2.PortConfig) vlan.Port {
	if cfg.VLAN.IsZero() {
		return must(vlan.Untagged(1))
	}
	return cfg.VLAN
}
