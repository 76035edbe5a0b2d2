package integration

import (
	"encoding/binary"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/port/qemu"
)

// 4. A QEMU "-netdev stream" peer, simulated by a client speaking the
// stream framing, and a namespace on a TAP port: the namespace pings the
// "VM", and the VM's UDP datagram reaches a socket in the namespace.
func TestQEMUStreamToTAP(t *testing.T) {
	sw := newSwitch(t, "sw-qemu")
	ns := addVM(t, sw, "tapvm", "10.82.0.1/24", l2PortMAC(vmMAC(1)))
	sock, err := qemu.ListenStream(qemu.Config{Path: filepath.Join(t.TempDir(), "vm.sock")})
	if err != nil {
		t.Fatal(err)
	}
	vm := &fakeVM{mac: vmMAC(2), ip: net.IPv4(10, 82, 0, 2).To4()}
	if err := sw.AddPort("qemuvm", sock, l2PortMAC(vm.mac)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", sock.Addr())
	if err != nil {
		t.Fatal(err)
	}
	var ended atomic.Bool
	t.Cleanup(func() { ended.Store(true); c.Close() })
	send := func(f []byte) {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(f)))
		if _, err := c.Write(append(b, f...)); err != nil && !ended.Load() { // the VM's late answers as the test ends are no one's
			t.Error(err)
		}
	}
	go func() { // the VM: answer what asks for an answer
		hdr := make([]byte, 4)
		for {
			if _, err := io.ReadFull(c, hdr); err != nil {
				return
			}
			f := make([]byte, binary.BigEndian.Uint32(hdr))
			if _, err := io.ReadFull(c, f); err != nil {
				return
			}
			if r := vm.answer(f); r != nil {
				send(r)
			}
		}
	}()
	mustPing(t, ns.ns, "10.82.0.2")

	in := ns.ns.ListenPacket(t, "udp4", "10.82.0.1:5555")
	send(vm.udpTo(vmMAC(1), net.IPv4(10, 82, 0, 1), 5555, "from the VM"))
	in.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, _, err := in.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from the VM" {
		t.Fatalf("namespace got %q, %v", buf[:n], err)
	}
	if cnt, _ := sw.Counters("qemuvm"); cnt.RxPackets == 0 || cnt.TxPackets == 0 || cnt.Drops[l2.DropSpoofedSource] != 0 {
		t.Fatalf("qemu port counters %+v", cnt)
	}
}
