package integration

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/qemu"
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
