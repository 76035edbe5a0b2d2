package tap_test

import (
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/porttest"
	"github.com/vswitch/vswitch/internal/port/tap"
)

var _ l2.CountingPort = (*tap.Port)(nil)

var (
	wlMAC   = frame.MustParseMAC("02:56:53:00:01:01") // the workload's eth0
	peerMAC = frame.MustParseMAC("02:56:53:00:01:02") // a made-up neighbour on the switch side
)

// workload makes a namespace with a TAP eth0 at 10.77.0.1/24 and a static
// neighbour 10.77.0.2 at peerMAC, so that it sends IP without ARP.
func workload(t *testing.T) (*netnstest.NS, *tap.Port) {
	ns := netnstest.New(t)
	p, err := tap.Open(tap.Config{Namespace: ns.Name, MAC: wlMAC, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Delete() })
	ns.AddAddr(t, "eth0", "10.77.0.1/24")
	l := ns.Link(t, "eth0")
	if err := ns.Do(func() error {
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP("10.77.0.2"), HardwareAddr: peerMAC[:]})
	}); err != nil {
		t.Fatal(err)
	}
	return ns, p
}

// udpFrame is an Ethernet/IPv4/UDP frame from 10.77.0.2:9 to 10.77.0.1:port.
func udpFrame(port uint16, payload string) []byte {
	b := append(append([]byte{}, wlMAC[:]...), peerMAC[:]...)
	b = append(b, 0x08, 0x00)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[10:], offload.Checksum(ip))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	return append(append(append(b, ip...), udp...), payload...)
}

func readFrames(t *testing.T, p *tap.Port) [][]byte {
	bufs := [][]byte{make([]byte, 2048), make([]byte, 2048), make([]byte, 2048), make([]byte, 2048)}
	sizes := make([]int, len(bufs))
	n, err := p.Read(bufs, sizes, 64)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := 0; i < n; i++ {
		out = append(out, bufs[i][64:64+sizes[i]])
	}
	return out
}

func TestOpenConfiguresAndCarriesFrames(t *testing.T) {
	ns, p := workload(t)
	l := ns.Link(t, "eth0")
	if frame.MAC(l.Attrs().HardwareAddr) != wlMAC || l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 || !p.Created() {
		t.Fatalf("eth0 in the namespace: MAC %s MTU %d flags %v created %v", l.Attrs().HardwareAddr, l.Attrs().MTU, l.Attrs().Flags, p.Created())
	}
	// Workload → port: a UDP datagram to the neighbour comes out of Read.
	c := ns.ListenPacket(t, "udp4", "10.77.0.1:0")
	if _, err := c.WriteTo([]byte("hello switch"), &net.UDPAddr{IP: net.ParseIP("10.77.0.2"), Port: 7}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for deadline := time.Now().Add(5 * time.Second); got == nil && time.Now().Before(deadline); {
		for _, f := range readFrames(t, p) { // IPv6 router solicitations etc. may come first
			if e := frame.Ethernet(f); e.EtherType() == 0x0800 && e.Src() == wlMAC && e.Dst() == peerMAC {
				got = f
			}
		}
	}
	if got == nil || string(got[len(got)-12:]) != "hello switch" {
		t.Fatalf("frame from the workload = %x", got)
	}
	// Port → workload: a written frame reaches a socket in the namespace.
	in := ns.ListenPacket(t, "udp4", "10.77.0.1:4242")
	porttest.WriteReaches(t, p, udpFrame(4242, "hello workload"), in, "hello workload")
}

func TestReattachKeepsAddresses(t *testing.T) {
	ns, p := workload(t)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if got := ns.Addrs(t, "eth0"); len(got) == 0 {
		t.Fatal("closing the port removed the device or its address")
	}
	again, err := tap.Open(tap.Config{Namespace: ns.Name, MAC: wlMAC, MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { again.Delete() })
	if again.Created() {
		t.Fatal("Open made a new device instead of re-attaching")
	}
	if got := ns.Addrs(t, "eth0"); len(got) == 0 || got[0] != "10.77.0.1/24" {
		t.Fatalf("addresses after re-attach = %v", got)
	}
	in := ns.ListenPacket(t, "udp4", "10.77.0.1:4243")
	porttest.WriteReaches(t, again, udpFrame(4243, "still here"), in, "still here")
}

func TestDeleteRemovesTheDevice(t *testing.T) {
	ns, p := workload(t)
	if err := p.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { _, err := netlink.LinkByName("eth0"); return err }); err == nil {
		t.Fatal("eth0 still exists after Delete")
	}
	// Delete of a closed port goes through netlink.
	q, err := tap.Open(tap.Config{Namespace: ns.Name, Name: "eth1"})
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
	if err := q.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() error { _, err := netlink.LinkByName("eth1"); return err }); err == nil {
		t.Fatal("eth1 still exists after Close and Delete")
	}
}

func TestOpenErrors(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.Veth(t, ns, "eth0", nil, netnstest.UniqueName("vth"))
	if _, err := tap.Open(tap.Config{Namespace: ns.Name}); err == nil {
		t.Fatal("Open attached to a veth named eth0")
	}
	if _, err := tap.Open(tap.Config{Namespace: ns.Name, Name: "a-name-far-too-long"}); err == nil {
		t.Fatal("Open accepted a 19-byte name")
	}
	if _, err := tap.Open(tap.Config{Namespace: "/nonexistent/ns"}); err == nil {
		t.Fatal("Open in a missing namespace succeeded")
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	ns := netnstest.New(t)
	p, err := tap.Open(tap.Config{Namespace: ns.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Delete() })
	porttest.CloseUnblocksRead(t, p)
}

func TestZeroAllocs(t *testing.T) {
	ns, p := workload(t)
	ns.ListenPacket(t, "udp4", "10.77.0.1:4244")
	f := [][]byte{append(make([]byte, 64), udpFrame(4244, "x")...)}
	offs := []int{64}
	if allocs := testing.AllocsPerRun(200, func() { p.Write(f, offs) }); allocs != 0 {
		t.Errorf("Write allocated %v times", allocs)
	}
	// Queue frames from the workload first, then read them one batch at a time.
	c := ns.ListenPacket(t, "udp4", "10.77.0.1:0")
	for range 300 {
		c.WriteTo([]byte("x"), &net.UDPAddr{IP: net.ParseIP("10.77.0.2"), Port: 7})
	}
	time.Sleep(50 * time.Millisecond)
	bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
	if allocs := testing.AllocsPerRun(200, func() { p.Read(bufs, sizes, 64) }); allocs != 0 {
		t.Errorf("Read allocated %v times", allocs)
	}
}

func TestRemoveOnlyDeletesTAPs(t *testing.T) {
	ns := netnstest.New(t)
	netnstest.Veth(t, ns, "eth0", nil, netnstest.UniqueName("vth"))
	if err := tap.Remove(ns.Name, "eth0"); err == nil || !strings.Contains(err.Error(), "not a TAP") {
		t.Fatalf("Remove of a veth = %v, want a refusal", err)
	}
	if err := ns.Do(func() error { _, err := netlink.LinkByName("eth0"); return err }); err != nil {
		t.Fatal("the veth is gone")
	}
	if err := tap.Remove(ns.Name, "nothing-here"); err != nil {
		t.Fatalf("Remove of a missing device = %v, want nil", err)
	}
}
