package integration

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/tap"
	"github.com/vswitch/vswitch/internal/vlan"
)

const testEtherType = 0x88b5 // IEEE local experimental: no stack answers it

// marked is a broadcast test frame from src, tagged with vid unless 0.
func marked(src frame.MAC, vid frame.VID, marker string) []byte {
	b := append(append([]byte{}, frame.Broadcast[:]...), src[:]...)
	if vid != 0 {
		b = binary.BigEndian.AppendUint16(b, frame.TPID8021Q)
		b = binary.BigEndian.AppendUint16(b, uint16(frame.MakeTCI(0, false, vid)))
	}
	b = binary.BigEndian.AppendUint16(b, testEtherType)
	return append(b, []byte(marker + "..............................................")[:46]...)
}

// captured returns the test frames a raw socket sees within d.
func captured(r *netnstest.Raw, d time.Duration) [][]byte {
	var out [][]byte
	for _, f := range r.RecvAll(d) {
		if e := frame.Ethernet(f); e.Check() == nil && e.EtherType() == testEtherType {
			out = append(out, f)
		}
	}
	return out
}

// expectFrames checks the captured frames against want, in any order:
// frames from different ingress ports are forwarded by different readers.
func expectFrames(t *testing.T, who string, got [][]byte, want ...[]byte) {
	t.Helper()
	slices.SortFunc(got, bytes.Compare)
	want = slices.Clone(want)
	slices.SortFunc(want, bytes.Compare)
	if len(got) != len(want) {
		t.Fatalf("%s captured %d test frames, want %d: %x", who, len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s frame %d\n got %x\nwant %x", who, i, got[i], want[i])
		}
	}
}

// tapNS is a namespace whose eth0 is a TAP port of sw, without addresses:
// traffic is hand-made frames on a raw socket.
func tapNS(t *testing.T, sw *l2.Switch, name string, vlan vlan.Port) *netnstest.Raw {
	t.Helper()
	ns := netnstest.New(t)
	p, err := tap.Open(tap.Config{Namespace: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Delete() })
	if err := sw.AddPort(name, p, l2.PortConfig{VLAN: vlan}); err != nil {
		t.Fatal(err)
	}
	return ns.Raw(t, "eth0")
}

// 3. VLANs with real tagged frames: a raw-socket station behind a trunk
// (10, 20) exchanges frames with access ports in VLAN 10 and 20, first on
// a TAP trunk, then with the AF_PACKET uplink as the trunk.
func TestVLANsWithRealTags(t *testing.T) {
	trunkModel, err := vlan.Trunk(frame.MustParseVLANSet("10,20"), 0)
	if err != nil {
		t.Fatal(err)
	}
	acc10, _ := vlan.Access(10)
	acc20, _ := vlan.Access(20)
	for _, kind := range []string{"tap", "afpacket"} {
		t.Run(kind, func(t *testing.T) {
			sw := newSwitch(t, "sw-vlan")
			var trunk *netnstest.Raw
			var trunkPort string
			if kind == "tap" {
				trunk, trunkPort = tapNS(t, sw, "trunk", trunkModel), "trunk"
			} else {
				phys, _ := physNet(t, sw, "", l2.PortConfig{VLAN: trunkModel})
				trunk, trunkPort = phys.Raw(t, "eth0"), "uplink"
			}
			a10 := tapNS(t, sw, "a10", acc10)
			a20 := tapNS(t, sw, "a20", acc20)
			st := vmMAC(0x77)
			trunk.Send(t, marked(st, 10, "to ten"))
			trunk.Send(t, marked(st, 20, "to twenty"))
			trunk.Send(t, marked(st, 30, "to thirty"))
			expectFrames(t, "access 10", captured(a10, 500*time.Millisecond), marked(st, 0, "to ten"))
			expectFrames(t, "access 20", captured(a20, 200*time.Millisecond), marked(st, 0, "to twenty"))
			c, _ := sw.Counters(trunkPort)
			if c.Drops[l2.DropVLANNotAllowed] != 1 {
				t.Fatalf("trunk drops: %v, want one vlan-not-allowed (VLAN 30)", c.DropsByReason())
			}

			m10, m20 := vmMAC(0x10), vmMAC(0x20)
			a10.Send(t, marked(m10, 0, "from ten"))
			a20.Send(t, marked(m20, 0, "from twenty"))
			a10.Send(t, marked(m10, 20, "hop attempt")) // tagged on an access port: dropped
			expectFrames(t, "trunk", captured(trunk, 500*time.Millisecond), marked(m10, 10, "from ten"), marked(m20, 20, "from twenty"))
			expectFrames(t, "access 20 (from 10)", captured(a20, 200*time.Millisecond))
			expectFrames(t, "access 10 (from 20)", captured(a10, 100*time.Millisecond))
			if c, _ := sw.Counters("a10"); c.Drops[l2.DropTaggedOnAccess] != 1 {
				t.Fatalf("access 10 drops: %v, want one tagged-on-access", c.DropsByReason())
			}
		})
	}
}
