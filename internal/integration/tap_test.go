package integration

import (
	"testing"

	"github.com/vswitch/vswitch/internal/l2"
)

// 1. Two namespaces on TAP ports of one switch: ping both ways and a
// 100 MB TCP transfer with matching checksums.
func TestTAPToTAP(t *testing.T) { tapToTAP(t, newSwitch(t, "sw-tap")) }

// The same with each port read by a goroutine of its own (a switch without
// a Poller, as l2's own tests and embedders without forwarding threads
// have it).
func TestTAPToTAPGoroutinePerPort(t *testing.T) {
	tapToTAP(t, newSwitchWith(t, l2.Options{Name: "sw-tap-g"}))
}

func tapToTAP(t *testing.T, sw *l2.Switch) {
	a := addVM(t, sw, "a", "10.80.0.1/24", l2PortMAC(vmMAC(1)))
	b := addVM(t, sw, "b", "10.80.0.2/24", l2PortMAC(vmMAC(2)))
	mustPing(t, a.ns, b.ip)
	mustPing(t, b.ns, a.ip)
	tcpTransfer(t, a.ns, b.ns, b.ip, 100<<20)
	tcpTransfer(t, b.ns, a.ns, a.ip, 16<<20)
	ca, _ := sw.Counters("a")
	cb, _ := sw.Counters("b")
	if ca.RxPackets == 0 || cb.TxPackets < ca.RxPackets/2 || ca.Dropped()+cb.Dropped() > ca.RxPackets/100 {
		t.Errorf("counters: a %+v, b %+v", ca, cb)
	}
}
