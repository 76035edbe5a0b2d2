package l2

import (
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
)

// TestSplitHorizon: ports of one split-horizon group (a switch's uplink
// and tunnel) never forward to each other, flooded or known; both still
// reach every other port, and every other port reaches them.
func TestSplitHorizon(t *testing.T) {
	h := newHarness(t, Options{Name: "sh"})
	h.add("uplink", PortConfig{Group: 1})
	h.add("tunnel", PortConfig{Group: 1})
	h.add("vm", PortConfig{})
	// A broadcast from the uplink reaches the VM, not the tunnel.
	h.send("uplink", ethFrame(frame.Broadcast, mac(1), noTag, 0, 1))
	if n, m := len(h.recv("vm")), len(h.recv("tunnel")); n != 1 || m != 0 {
		t.Fatalf("broadcast from the uplink: VM got %d, tunnel %d; want 1 and 0", n, m)
	}
	// The tunnel's station is learned; the uplink's frame to it is dropped
	// as filtered, not sent.
	h.send("tunnel", ethFrame(frame.Broadcast, mac(2), noTag, 0, 2))
	if n, m := len(h.recv("vm")), len(h.recv("uplink")); n != 1 || m != 0 {
		t.Fatalf("broadcast from the tunnel: VM got %d, uplink %d; want 1 and 0", n, m)
	}
	h.send("uplink", ethFrame(mac(2), mac(1), noTag, 0, 3))
	if m := len(h.recv("tunnel")); m != 0 {
		t.Fatalf("known unicast from the uplink to the tunnel's station crossed: %d frames", m)
	}
	if c := h.counters("uplink"); c.Drops[DropFiltered] != 1 {
		t.Fatalf("uplink counters %+v: want one filtered drop", c)
	}
	// The VM reaches both.
	h.send("vm", ethFrame(frame.Broadcast, mac(3), noTag, 0, 4))
	if n, m := len(h.recv("uplink")), len(h.recv("tunnel")); n != 1 || m != 1 {
		t.Fatalf("broadcast from the VM: uplink %d, tunnel %d; want 1 and 1", n, m)
	}
}
