package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/qemu"
	"github.com/vswitch/vswitch/internal/vlan"
)

// guestPort adds a QEMU stream port for a guest to sw and returns its socket.
func guestPort(t *testing.T, sw *l2.Switch, name string, mac frame.MAC, cfg l2.PortConfig) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), name+".sock")
	s, err := qemu.ListenStream(qemu.Config{Path: sock})
	if err != nil {
		t.Fatal(err)
	}
	cfg.MAC, cfg.SpoofGuard = mac, true
	if err := sw.AddPort(name, s, cfg); err != nil {
		t.Fatal(err)
	}
	return sock
}

// pingPeer waits (up to 60 s) for the peer to answer, pings it 3 times,
// and stays up a while so that the peer can finish its own pings.
func pingPeer(ip string) string {
	return "for i in $(seq 60); do ping -c 1 -W 1 " + ip + " >/dev/null && break; done; ping -c 3 -W 2 " + ip + "; r=$?; sleep 8; exit $r"
}

// Issue 5, test 1: a synthetic (virtio-net) and a legacy (tulip) guest on
// one private switch ping each other, and the legacy guest's kernel really
// bound the tulip driver.
func TestGuestsSyntheticAndLegacy(t *testing.T) { onBothPaths(t, guestsSyntheticAndLegacy) }

func guestsSyntheticAndLegacy(t *testing.T, newSwitch func(string) testSwitch) {
	lab := guestlab.Build(t)
	sw := newSwitch("sw-guests")
	synMAC, legMAC := vmMAC(0x31), vmMAC(0x32)
	synNIC, synNS := sw.guest(t, "syn", guestlab.Synthetic, synMAC, l2.PortConfig{})
	legNIC, legNS := sw.guest(t, "leg", guestlab.Legacy, legMAC, l2.PortConfig{})
	syn := lab.Start(t, guestlab.Guest{Name: "synthetic", IP: "10.84.0.1/24", Cmd: pingPeer("10.84.0.2"), NIC: synNIC, Netns: synNS})
	leg := lab.Start(t, guestlab.Guest{Name: "legacy", IP: "10.84.0.2/24", Cmd: pingPeer("10.84.0.1"), NIC: legNIC, Netns: legNS})
	start := time.Now()
	for _, g := range []*guestlab.Run{syn, leg} {
		rc, err := g.Wait(3 * time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if rc != 0 {
			t.Fatalf("guest %s: ping of its peer failed (rc %d); console:\n%s", g.Guest.Name, rc, g.Console())
		}
	}
	t.Logf("two guests booted, pinged each other and powered off in %v", time.Since(start).Round(time.Millisecond))
	if d := syn.Driver(); d != "virtio_net" {
		t.Errorf("synthetic guest's eth0 driver = %q, want virtio_net", d)
	}
	if d := leg.Driver(); d != "tulip" {
		t.Errorf("legacy guest's eth0 driver = %q, want tulip; console:\n%s", d, leg.Console())
	}
}

// Issue 5, test 2: a guest on a trunk port with VLAN sub-interfaces eth0.10
// and eth0.20 talks to a guest on an access-10 port and to a station on an
// access-20 port (a namespace: at most two guests run at once); the
// access-10 guest, though it has an address in VLAN 20's subnet too,
// cannot reach VLAN 20.
func TestGuestTrunkWithVLANSubinterfaces(t *testing.T) {
	onBothPaths(t, guestTrunkWithVLANSubinterfaces)
}

func guestTrunkWithVLANSubinterfaces(t *testing.T, newSwitch func(string) testSwitch) {
	lab := guestlab.Build(t)
	sw := newSwitch("sw-gtrunk")
	trunk, _ := vlan.Trunk(frame.MustParseVLANSet("10,20"), 0)
	acc10, _ := vlan.Access(10)
	acc20, _ := vlan.Access(20)
	sw.station(t, "ns20", "10.85.20.2/24", l2.PortConfig{MAC: vmMAC(0x42), SpoofGuard: true, VLAN: acc20})
	trunkMAC, accMAC := vmMAC(0x40), vmMAC(0x41)
	trunkNIC, trunkNS := sw.guest(t, "trunk", guestlab.Synthetic, trunkMAC, l2.PortConfig{VLAN: trunk})
	accNIC, accNS := sw.guest(t, "access10", guestlab.Legacy, accMAC, l2.PortConfig{VLAN: acc10})
	tg := lab.Start(t, guestlab.Guest{Name: "trunk", VLANs: "10:10.85.10.1/24,20:10.85.20.1/24", Netns: trunkNS,
		Cmd: "for i in $(seq 60); do ping -c 1 -W 1 10.85.10.2 >/dev/null && break; done; " +
			"ping -c 2 -W 2 10.85.10.2 && ping -c 2 -W 2 10.85.20.2; r=$?; sleep 10; exit $r",
		NIC: trunkNIC})
	ag := lab.Start(t, guestlab.Guest{Name: "access10", IP: "10.85.10.2/24", Netns: accNS,
		Cmd: "ip addr add 10.85.20.9/24 dev eth0; " +
			"for i in $(seq 60); do ping -c 1 -W 1 10.85.10.1 >/dev/null && break; done; " +
			"ping -c 2 -W 2 10.85.10.1 || exit 1; " +
			"ping -c 2 -W 1 10.85.20.2 && exit 2; sleep 8; exit 0",
		NIC: accNIC})
	for _, g := range []*guestlab.Run{tg, ag} {
		rc, err := g.Wait(3 * time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if rc != 0 {
			t.Fatalf("guest %s failed with %d (2: it reached VLAN 20 from VLAN 10); console:\n%s", g.Guest.Name, rc, g.Console())
		}
	}
	if c := sw.counters(t, "trunk"); c.RxPackets == 0 {
		t.Fatal("no frames from the trunk guest")
	}
}

// Issue 5, test 5: a guest on a qemu-stream socket and a guest on a TAP that
// QEMU opens itself (vswitch attaches to its host side with AF_PACKET)
// ping each other.
func TestGuestsStreamAndQEMUOwnedTAP(t *testing.T) {
	lab := guestlab.Build(t)
	host := netnstest.New(t) // where QEMU runs and makes its TAP
	sw := newSwitch(t, "sw-gtap")
	sMAC, tMAC := vmMAC(0x51), vmMAC(0x52)
	sg := lab.Start(t, guestlab.Guest{Name: "stream", IP: "10.86.0.1/24", Cmd: pingPeer("10.86.0.2"),
		NIC: guestlab.NIC{Type: guestlab.Synthetic, MAC: sMAC, Socket: guestPort(t, sw, "stream", sMAC, l2.PortConfig{})}})
	tg := lab.Start(t, guestlab.Guest{Name: "tap", IP: "10.86.0.2/24", Cmd: pingPeer("10.86.0.1"), Netns: host.Name,
		NIC: guestlab.NIC{Type: guestlab.Synthetic, MAC: tMAC, TAP: "vmtap0"}})
	// QEMU makes the TAP; vswitch brings it up and binds its host side.
	var link netlink.Link
	for deadline := time.Now().Add(30 * time.Second); link == nil; time.Sleep(50 * time.Millisecond) {
		host.Do(func() error { link, _ = netlink.LinkByName("vmtap0"); return nil })
		if time.Now().After(deadline) {
			t.Fatalf("QEMU made no TAP; console:\n%s", tg.Console())
		}
	}
	if err := host.Do(func() error { return netlink.LinkSetUp(link) }); err != nil {
		t.Fatal(err)
	}
	p, err := afpacket.Open(afpacket.Config{Interface: "vmtap0", Namespace: host.Name})
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.AddPort("tap", p, l2.PortConfig{MAC: tMAC, SpoofGuard: true}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*guestlab.Run{sg, tg} {
		if rc, err := g.Wait(3 * time.Minute); err != nil || rc != 0 {
			t.Fatalf("guest %s: rc %d, %v; console:\n%s", g.Guest.Name, rc, err, g.Console())
		}
	}
}

// Issue 5, test 4: a guest on an internal switch reaches the host adapter;
// a guest on a private switch (no host adapter) cannot reach the host.
func TestGuestsInternalAndPrivate(t *testing.T) { onBothPaths(t, guestsInternalAndPrivate) }

func guestsInternalAndPrivate(t *testing.T, newSwitch func(string) testSwitch) {
	lab := guestlab.Build(t)
	host := netnstest.New(t)
	internal, private := newSwitch("int0"), newSwitch("priv0")
	internal.hostAdapter(t, host, "int0")
	host.AddAddr(t, "int0", "10.87.0.254/24")
	iMAC, pMAC := vmMAC(0x61), vmMAC(0x62)
	iNIC, iNS := internal.guest(t, "vm", guestlab.Synthetic, iMAC, l2.PortConfig{})
	pNIC, pNS := private.guest(t, "vm", guestlab.Legacy, pMAC, l2.PortConfig{})
	ig := lab.Start(t, guestlab.Guest{Name: "internal", IP: "10.87.0.1/24", Netns: iNS,
		Cmd: "for i in $(seq 60); do ping -c 1 -W 1 10.87.0.254 >/dev/null && break; done; ping -c 2 -W 2 10.87.0.254", NIC: iNIC})
	pg := lab.Start(t, guestlab.Guest{Name: "private", IP: "10.87.0.2/24", Netns: pNS,
		Cmd: "sleep 5; ping -c 3 -W 1 10.87.0.254 && exit 1; exit 0", NIC: pNIC})
	for _, g := range []*guestlab.Run{ig, pg} {
		if rc, err := g.Wait(3 * time.Minute); err != nil || rc != 0 {
			t.Fatalf("guest %s: rc %d (private: 1 means it reached the host), %v; console:\n%s", g.Guest.Name, rc, err, g.Console())
		}
	}
}

// Issue 5, test 3: a guest on a hybrid port (PVID 10, untagged 10,20,
// tagged 30) against stations on access ports of VLAN 10, 20, 30 and 40:
//   - untagged from the guest joins VLAN 10, and VLAN 10 comes back untagged;
//   - tagged 20 from the guest is accepted into VLAN 20 (the access-20 port
//     transmits), and VLAN 20 reaches the guest untagged, on eth0 (the
//     station's ARP request shows up in eth0's neighbour table);
//   - tagged 30 is accepted and VLAN 30 comes back tagged, to eth0.30;
//   - tagged 40 is not a member: dropped, the station is unreachable.
func TestGuestHybridPort(t *testing.T) { onBothPaths(t, guestHybridPort) }

func guestHybridPort(t *testing.T, newSwitch func(string) testSwitch) {
	lab := guestlab.Build(t)
	sw := newSwitch("sw-ghybrid")
	stations := map[frame.VID]*vm{}
	for _, v := range []frame.VID{10, 20, 30, 40} {
		acc, _ := vlan.Access(v)
		stations[v] = sw.station(t, fmt.Sprint("acc", v), fmt.Sprintf("10.88.%d.2/24", v), l2.PortConfig{MAC: vmMAC(byte(v)), SpoofGuard: true, VLAN: acc})
	}
	hybrid, err := vlan.Hybrid(10, frame.MustParseVLANSet("10,20"), frame.MustParseVLANSet("30"))
	if err != nil {
		t.Fatal(err)
	}
	gMAC := vmMAC(0x70)
	gNIC, gNS := sw.guest(t, "hybrid", guestlab.Synthetic, gMAC, l2.PortConfig{VLAN: hybrid})
	g := lab.Start(t, guestlab.Guest{Name: "hybrid", IP: "10.88.10.1/24", VLANs: "20:10.88.20.1/24,30:10.88.30.1/24,40:10.88.40.1/24", Netns: gNS,
		Cmd: "for i in $(seq 60); do ping -c 1 -W 1 10.88.10.2 >/dev/null && break; done; " +
			"ping -c 2 -W 2 10.88.10.2 || exit 10; " +
			"ping -c 1 -W 1 10.88.20.2; " + // its ARP leaves tagged 20; the answer comes back untagged, to eth0
			"ping -c 2 -W 2 10.88.30.2 || exit 30; " +
			"ping -c 2 -W 1 10.88.40.2 && exit 40; " +
			"for i in $(seq 40); do ip neigh show dev eth0 | grep -q 10.88.20.2 && exit 0; sleep 0.5; done; exit 21",
		NIC: gNIC})
	// While the guest runs, the VLAN 20 station asks for the guest's VLAN 20
	// address: its broadcast must reach the guest untagged.
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(g.Console(), "VSWITCH-DRIVER") && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	stations[20].ns.Ping(t, "10.88.20.1", 10*time.Second) // no reply can come: it would go to VLAN 10
	rc, err := g.Wait(3 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if rc != 0 {
		t.Fatalf("hybrid guest: check %d failed (10, 30: unreachable; 40: VLAN 40 reachable; 21: VLAN 20 did not reach eth0 untagged); console:\n%s", rc, g.Console())
	}
	if c := sw.counters(t, "acc20"); c.TxPackets == 0 {
		t.Fatal("nothing the guest sent tagged 20 reached VLAN 20")
	}
	if c := sw.counters(t, "hybrid"); c.Drops[l2.DropVLANNotAllowed] == 0 {
		t.Fatalf("no frame tagged 40 was dropped at the hybrid port: %v", c.DropsByReason())
	}
}
