package integration

import (
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vlan"
)

// A TAP with offloads (super-frames, partial checksums) and a TAP peer with
// offloads off: TCP both ways arrives intact, the plain side getting
// wire-sized segments cut by the switch, the offload side super-frames.
func TestOffloadTAPToPlainTAP(t *testing.T) {
	sw := newSwitch(t, "sw-off")
	fast := addVM(t, sw, "fast", "10.93.0.1/24", l2PortMAC(vmMAC(1)))
	plain := addVMWith(t, sw, "plain", "10.93.0.2/24", l2PortMAC(vmMAC(2)), tap.Config{NoOffloads: true})
	mustPing(t, fast.ns, plain.ip)
	tcpTransfer(t, fast.ns, plain.ns, plain.ip, 32<<20)
	tcpTransfer(t, plain.ns, fast.ns, fast.ip, 32<<20)
	c, err := sw.Counters("plain")
	if err != nil {
		t.Fatal(err)
	}
	if c.Segmented == 0 || c.Drops[l2.DropBadOffload] != 0 {
		t.Errorf("plain port: %d super-frames segmented, %d bad-offload drops; want some segmented, no drops", c.Segmented, c.Drops[l2.DropBadOffload])
	}
	if c, _ := sw.Counters("fast"); c.Segmented != 0 {
		t.Errorf("offload port had %d super-frames segmented; it takes them whole", c.Segmented)
	}
}

// Tagged super-frames on a real wire: two switches joined by a veth whose
// ends are AF_PACKET trunks. A TCP stream between access ports of VLAN 10
// crosses the veth as tagged super-frames (tag pushed on one switch,
// restored from the kernel's metadata and popped on the other), whole all
// the way; a VLAN 20 port sees none of it.
func TestTaggedSuperFramesBetweenSwitches(t *testing.T) {
	sw1, sw2 := newSwitch(t, "sw-a"), newSwitch(t, "sw-b")
	daemon := netnstest.New(t)
	netnstest.Veth(t, daemon, "trunk1", daemon, "trunk2")
	trunk := l2.PortConfig{VLAN: must(vlan.Trunk(frame.MustParseVLANSet("10,20"), 0))}
	var ups []*afpacket.Port
	for i, sw := range []*l2.Switch{sw1, sw2} {
		up, err := afpacket.Open(afpacket.Config{Interface: []string{"trunk1", "trunk2"}[i], Namespace: daemon.Name})
		if err != nil {
			t.Fatal(err)
		}
		if err := sw.AddPort("trunk", up, trunk); err != nil {
			t.Fatal(err)
		}
		ups = append(ups, up)
	}
	a := addVM(t, sw1, "a", "10.94.0.1/24", l2.PortConfig{MAC: vmMAC(1), VLAN: must(vlan.Access(10))})
	b := addVM(t, sw2, "b", "10.94.0.2/24", l2.PortConfig{MAC: vmMAC(2), VLAN: must(vlan.Access(10))})
	other := addVM(t, sw2, "other", "10.94.0.3/24", l2.PortConfig{MAC: vmMAC(3), VLAN: must(vlan.Access(20))})
	mustPing(t, a.ns, b.ip)
	mustNotPing(t, a.ns, other.ip)
	tcpTransfer(t, a.ns, b.ns, b.ip, 32<<20)
	tcpTransfer(t, b.ns, a.ns, a.ip, 32<<20)
	for i, up := range ups {
		if st := up.Stats(); st.SuperFrames == 0 || st.Truncated != 0 {
			t.Errorf("trunk %d: %+v; want tagged super-frames read whole", i+1, st)
		}
	}
	assertOffloadClean(t, sw1)
	assertOffloadClean(t, sw2)
	if c, _ := sw2.Counters("other"); c.TxBytes > 4096 {
		t.Errorf("the VLAN 20 port was sent %d bytes of VLAN 10's stream", c.TxBytes)
	}
}
