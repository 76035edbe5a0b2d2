package integration

import (
	"testing"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/afpacket"
)

// physNet builds the "physical network" of an external switch: a namespace
// with eth0 at cidr whose veth peer nic0 sits in the daemon's namespace,
// bound to the switch as its AF_PACKET uplink. Offloads stay at the
// kernel's defaults on both ends.
func physNet(t *testing.T, sw *l2.Switch, cidr string, cfg l2.PortConfig) (*netnstest.NS, *afpacket.Port) {
	t.Helper()
	daemon := netnstest.New(t)
	phys := netnstest.New(t)
	netnstest.Veth(t, daemon, "nic0", phys, "eth0")
	p, err := afpacket.Open(afpacket.Config{Interface: "nic0", Namespace: daemon.Name})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort("uplink", p, cfg); err != nil {
		t.Fatal(err)
	}
	if cidr != "" {
		phys.AddAddr(t, "eth0", cidr)
	}
	return phys, p
}

// 2. A namespace on a TAP port and a "physical network" behind the
// AF_PACKET uplink: ping both ways, and TCP both ways with the peers'
// default offloads (partial checksums and TSO super-frames from the veth).
func TestTAPToUplink(t *testing.T) {
	sw := newSwitch(t, "sw-ext")
	phys, up := physNet(t, sw, "10.91.0.1/24", l2.PortConfig{})
	vm := addVM(t, sw, "vm", "10.91.0.2/24", l2PortMAC(vmMAC(1)))
	mustPing(t, vm.ns, "10.91.0.1")
	mustPing(t, phys, vm.ip)
	tcpTransfer(t, phys, vm.ns, vm.ip, 64<<20) // wire → VM: super-frames pass whole
	tcpTransfer(t, vm.ns, phys, "10.91.0.1", 64<<20)
	st := up.Stats()
	t.Logf("uplink: %+v", st)
	if st.Truncated != 0 || st.SuperFrames == 0 {
		t.Errorf("uplink stats %+v: want super-frames read whole, none truncated", st)
	}
	assertOffloadClean(t, sw)
}
