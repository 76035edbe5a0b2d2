package integration

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/l2"
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
func TestGuestsSyntheticAndLegacy(t *testing.T) {
	lab := guestlab.Build(t)
	sw := newSwitch(t, "sw-guests")
	synMAC, legMAC := vmMAC(0x31), vmMAC(0x32)
	syn := lab.Start(t, guestlab.Guest{Name: "synthetic", IP: "10.84.0.1/24", Cmd: pingPeer("10.84.0.2"),
		NIC: guestlab.NIC{Model: guestlab.Synthetic, MAC: synMAC, Socket: guestPort(t, sw, "syn", synMAC, l2.PortConfig{})}})
	leg := lab.Start(t, guestlab.Guest{Name: "legacy", IP: "10.84.0.2/24", Cmd: pingPeer("10.84.0.1"),
		NIC: guestlab.NIC{Model: guestlab.Legacy, MAC: legMAC, Socket: guestPort(t, sw, "leg", legMAC, l2.PortConfig{})}})
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
	lab := guestlab.Build(t)
	sw := newSwitch(t, "sw-gtrunk")
	trunk, _ := vlan.Trunk(frame.MustParseVLANSet("10,20"), 0)
	acc10, _ := vlan.Access(10)
	acc20, _ := vlan.Access(20)
	addVM(t, sw, "ns20", "10.85.20.2/24", l2.PortConfig{MAC: vmMAC(0x42), SpoofGuard: true, VLAN: acc20})
	trunkMAC, accMAC := vmMAC(0x40), vmMAC(0x41)
	tg := lab.Start(t, guestlab.Guest{Name: "trunk", VLANs: "10:10.85.10.1/24,20:10.85.20.1/24",
		Cmd: "for i in $(seq 60); do ping -c 1 -W 1 10.85.10.2 >/dev/null && break; done; " +
			"ping -c 2 -W 2 10.85.10.2 && ping -c 2 -W 2 10.85.20.2; r=$?; sleep 10; exit $r",
		NIC: guestlab.NIC{Model: guestlab.Synthetic, MAC: trunkMAC, Socket: guestPort(t, sw, "trunk", trunkMAC, l2.PortConfig{VLAN: trunk})}})
	ag := lab.Start(t, guestlab.Guest{Name: "access10", IP: "10.85.10.2/24",
		Cmd: "ip addr add 10.85.20.9/24 dev eth0; " +
			"for i in $(seq 60); do ping -c 1 -W 1 10.85.10.1 >/dev/null && break; done; " +
			"ping -c 2 -W 2 10.85.10.1 || exit 1; " +
			"ping -c 2 -W 1 10.85.20.2 && exit 2; sleep 8; exit 0",
		NIC: guestlab.NIC{Model: guestlab.Legacy, MAC: accMAC, Socket: guestPort(t, sw, "access10", accMAC, l2.PortConfig{VLAN: acc10})}})
	for _, g := range []*guestlab.Run{tg, ag} {
		rc, err := g.Wait(3 * time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if rc != 0 {
			t.Fatalf("guest %s failed with %d (2: it reached VLAN 20 from VLAN 10); console:\n%s", g.Guest.Name, rc, g.Console())
		}
	}
	if c, _ := sw.Counters("trunk"); c.RxPackets == 0 {
		t.Fatal("no frames from the trunk guest")
	}
}
