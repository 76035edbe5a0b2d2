package afpacket_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/netnstest"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/porttest"
	"github.com/vswitch/vswitch/internal/port/tap"
)

var _ l2.CountingPort = (*afpacket.Port)(nil)

var neighMAC = frame.MustParseMAC("02:56:53:00:02:02") // a made-up host on the switch side

// uplink makes a "daemon" namespace holding nic0, whose veth peer eth0 sits
// in a "physical network" namespace at 10.90.0.1/24 with a static
// neighbour 10.90.0.2 at neighMAC, and opens the port on nic0.
func uplink(t *testing.T) (phys *netnstest.NS, p *afpacket.Port) {
	_, phys, p = uplinkNS(t)
	return phys, p
}

func uplinkNS(t *testing.T) (daemon, phys *netnstest.NS, p *afpacket.Port) {
	daemon = netnstest.New(t)
	phys = netnstest.New(t)
	daemon.NoIPv6(t) // only the tests' own frames on the wire
	phys.NoIPv6(t)
	netnstest.Veth(t, daemon, "nic0", phys, "eth0")
	phys.AddAddr(t, "eth0", "10.90.0.1/24")
	l := phys.Link(t, "eth0")
	if err := phys.Do(func() error {
		return netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT,
			IP: net.ParseIP("10.90.0.2"), HardwareAddr: neighMAC[:]})
	}); err != nil {
		t.Fatal(err)
	}
	p, err := afpacket.Open(afpacket.Config{Interface: "nic0", Namespace: daemon.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return daemon, phys, p
}

type reader struct {
	bufs  [][]byte
	sizes []int
}

func newReader() *reader {
	r := &reader{sizes: make([]int, 16)}
	for range 16 {
		r.bufs = append(r.bufs, make([]byte, 128+9216))
	}
	return r
}

// hdrOf returns the virtio-net header in front of e, a frame in one of r's buffers.
func (r *reader) hdrOf(e frame.Ethernet) []byte {
	for _, b := range r.bufs {
		if &b[128] == &e[0] {
			return b[128-offload.VnetHdrLen : 128]
		}
	}
	panic("frame not in a read buffer")
}

// next returns the first frame read within 5 s that match accepts.
func (r *reader) next(t *testing.T, p *afpacket.Port, match func(frame.Ethernet) bool) []byte {
	t.Helper()
	type res struct {
		f   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		for {
			n, err := p.Read(r.bufs, r.sizes, 128)
			if err != nil {
				ch <- res{err: err}
				return
			}
			for i := 0; i < n; i++ {
				if f := r.bufs[i][128 : 128+r.sizes[i]]; match(frame.Ethernet(f)) {
					ch <- res{f: append([]byte(nil), f...)}
					return
				}
			}
		}
	}()
	select {
	case x := <-ch:
		if x.err != nil {
			t.Fatal(x.err)
		}
		return x.f
	case <-time.After(5 * time.Second):
		t.Fatal("no matching frame read within 5 s")
	}
	return nil
}

func TestReceivePartialChecksumAndSend(t *testing.T) {
	phys, p := uplink(t)
	r := newReader()
	c := phys.ListenPacket(t, "udp4", "10.90.0.1:0")
	// veth leaves the UDP checksum to "hardware": the port hands it on as a
	// partial checksum, described by the frame's virtio-net header.
	c.WriteTo([]byte("from the wire"), &net.UDPAddr{IP: net.ParseIP("10.90.0.2"), Port: 9})
	var h offload.VnetHdr
	f := r.next(t, p, func(e frame.Ethernet) bool {
		if e.Dst() != neighMAC || e.EtherType() != 0x0800 {
			return false
		}
		h, _ = offload.DecodeVnetHdr(r.hdrOf(e))
		return true
	})
	if string(f[len(f)-13:]) != "from the wire" {
		t.Fatalf("frame %x", f)
	}
	if h.Flags&offload.FlagNeedsCsum == 0 || h.CsumStart != 34 || h.CsumOffset != 6 {
		t.Fatalf("virtio-net header %+v: want a partial UDP checksum from byte 34", h)
	}
	if err := offload.CompleteChecksum(f, int(h.CsumStart), int(h.CsumOffset)); err != nil {
		t.Fatal(err)
	}
	ip := f[14:34]
	pseudo := append(append(append([]byte{}, ip[12:20]...), 0, 17), byte((len(f)-34)>>8), byte(len(f)-34))
	if offload.Checksum(append(pseudo, f[34:]...)) != 0 {
		t.Fatalf("UDP checksum completed as the header says does not verify")
	}
	if st := p.Stats(); st.PartialCsum == 0 {
		t.Errorf("stats: %+v", st)
	}

	// Sending: a frame written to the port reaches a socket on the wire.
	in := phys.ListenPacket(t, "udp4", "10.90.0.1:6000")
	physMAC := frame.MAC(phys.Link(t, "eth0").Attrs().HardwareAddr)
	porttest.WriteReaches(t, p, udpFrame(physMAC, 6000, "to the wire"), in, "to the wire")
}

// PACKET_IGNORE_OUTGOING: frames that others (the host's stack, another
// socket) transmit on the NIC are outgoing, not ingress: the port must not
// read them. (Its own transmissions never come back to it in any case.)
func TestOutgoingNotRead(t *testing.T) {
	daemon, phys, p := uplinkNS(t)
	other := daemon.Raw(t, "nic0")
	wire := phys.Raw(t, "eth0")
	got := make(chan []byte, 64)
	go func() {
		r := newReader()
		for {
			n, err := p.Read(r.bufs, r.sizes, 128)
			if err != nil {
				close(got)
				return
			}
			for i := 0; i < n; i++ {
				got <- append([]byte(nil), r.bufs[i][128:128+r.sizes[i]]...)
			}
		}
	}()
	out := testFrame(0, "sent by another socket")
	for range 5 {
		other.Send(t, out)
	}
	if f := wire.Recv(5 * time.Second); f == nil {
		t.Fatal("the other socket's frames did not reach the wire")
	}
	time.Sleep(300 * time.Millisecond)
	p.Close()
	for f := range got {
		if bytes.Equal(f, out) {
			t.Fatal("the port read a frame that was going out of the NIC as if it came in")
		}
	}
}

func udpFrame(dst frame.MAC, port uint16, payload string) []byte {
	b := append(append([]byte{}, dst[:]...), neighMAC[:]...)
	b = append(b, 0x08, 0x00)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 90, 0, 2, 10, 90, 0, 1}
	binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
	binary.BigEndian.PutUint16(ip[10:], offload.Checksum(ip))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(b, ip...), udp...), payload...)
}

// testFrame is a broadcast of a local-experimental EtherType, tagged with
// vid (and priority 5) unless vid is 0.
func testFrame(vid frame.VID, marker string) []byte {
	b := append(append([]byte{}, frame.Broadcast[:]...), neighMAC[:]...)
	if vid != 0 {
		b = binary.BigEndian.AppendUint16(b, frame.TPID8021Q)
		b = binary.BigEndian.AppendUint16(b, uint16(frame.MakeTCI(5, false, vid)))
	}
	b = append(b, 0x88, 0xb5)
	return append(b, []byte(marker + "..............................................")[:46]...)
}

func TestTagsRestoredAndSent(t *testing.T) {
	phys, p := uplink(t)
	raw := phys.Raw(t, "eth0")
	r := newReader()
	raw.Send(t, testFrame(10, "tagged ten"))
	f := r.next(t, p, func(e frame.Ethernet) bool { return e.EtherType() == 0x88b5 })
	if !bytes.Equal(f, testFrame(10, "tagged ten")) {
		t.Fatalf("read\n%x\nwant (tag restored in place)\n%x", f, testFrame(10, "tagged ten"))
	}
	raw.Send(t, testFrame(0, "untagged"))
	if f := r.next(t, p, func(e frame.Ethernet) bool { return e.EtherType() == 0x88b5 }); !bytes.Equal(f, testFrame(0, "untagged")) {
		t.Fatalf("untagged frame read as %x", f)
	}
	// A tagged frame written to the port is tagged on the wire.
	out := testFrame(20, "tagged twenty")
	p.Write([][]byte{append(make([]byte, 64), out...)}, []int{64})
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if got := raw.Recv(time.Second); got != nil && frame.Ethernet(got).EtherType() == 0x88b5 {
			if !bytes.Equal(got, out) {
				t.Fatalf("wire saw\n%x\nwant\n%x", got, out)
			}
			return
		}
	}
	t.Fatal("the tagged frame was not seen on the wire")
}

func TestCloseUnblocksRead(t *testing.T) {
	_, p := uplink(t)
	porttest.CloseUnblocksRead(t, p)
}

func TestZeroAllocs(t *testing.T) {
	phys, p := uplink(t)
	raw := phys.Raw(t, "eth0")
	f := testFrame(10, "x")
	for range 300 {
		raw.Send(t, f)
	}
	time.Sleep(50 * time.Millisecond)
	r := newReader()
	if a := testing.AllocsPerRun(100, func() { p.Read(r.bufs[:1], r.sizes, 128) }); a != 0 {
		t.Errorf("Read allocated %v times", a)
	}
	out := [][]byte{append(make([]byte, 64), f...)}
	offs := []int{64}
	if a := testing.AllocsPerRun(100, func() { p.Write(out, offs) }); a != 0 {
		t.Errorf("Write allocated %v times", a)
	}
}

// The same backend on the host side of a TAP that QEMU owns: here the test
// holds the TAP's file descriptor as QEMU would, and the port binds the
// device by name. What "QEMU" writes comes out of the port, and the other
// way round.
func TestQEMUOwnedTAP(t *testing.T) {
	host := netnstest.New(t)
	vm, err := tap.Open(tap.Config{Namespace: host.Name, Name: "vnet7"}) // QEMU's -netdev tap,ifname=vnet7
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Delete() })
	p, err := afpacket.Open(afpacket.Config{Interface: "vnet7", Namespace: host.Name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r := newReader()
	fromVM := testFrame(0, "from the guest")
	if n, err := vm.Write([][]byte{append(make([]byte, 64), fromVM...)}, []int{64}); n != 1 || err != nil {
		t.Fatalf("guest write = %d, %v", n, err)
	}
	if f := r.next(t, p, func(e frame.Ethernet) bool { return e.EtherType() == 0x88b5 }); !bytes.Equal(f, fromVM) {
		t.Fatalf("port read %x", f)
	}
	toVM := testFrame(30, "to the guest, tagged")
	if n, err := p.Write([][]byte{append(make([]byte, 64), toVM...)}, []int{64}); n != 1 || err != nil {
		t.Fatalf("port write = %d, %v", n, err)
	}
	got := make(chan bool, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
		for {
			n, err := vm.Read(bufs, sizes, 64)
			if err != nil {
				got <- false
				return
			}
			if n > 0 && bytes.Equal(bufs[0][64:64+sizes[0]], toVM) { // a TAP read keeps the tag in the frame
				got <- true
				return
			}
		}
	}()
	select {
	case ok := <-got:
		if !ok {
			t.Fatal("the guest's read failed")
		}
	case <-time.After(5 * time.Second):
		vm.Close() // unblocks the reader
		t.Fatal("the guest did not receive the frame")
	}
}

// A frame longer than its read buffer is dropped and counted, and the
// frames after it in the same batch close up: frame i is in bufs[i].
func TestTruncatedFrameDroppedInBatch(t *testing.T) {
	phys, p := uplink(t)
	raw := phys.Raw(t, "eth0")
	long, short := testFrame(0, "long"), testFrame(0, "short")
	long = append(long, make([]byte, 200)...)
	raw.Send(t, long)
	raw.Send(t, short)
	time.Sleep(100 * time.Millisecond)
	bufs := [][]byte{make([]byte, 128+100), make([]byte, 128+100)}
	sizes := make([]int, 2)
	var got [][]byte
	for deadline := time.Now().Add(5 * time.Second); len(got) == 0 && time.Now().Before(deadline); {
		n, err := p.Read(bufs, sizes, 128)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			got = append(got, append([]byte(nil), bufs[i][128:128+sizes[i]]...))
		}
	}
	if len(got) != 1 || !bytes.Equal(got[0], short) {
		t.Fatalf("read %d frames (%x); want only the short one in the first buffer", len(got), got)
	}
	if st := p.Stats(); st.Truncated != 1 {
		t.Errorf("stats %+v: want the long frame counted as truncated", st)
	}
	if c := p.BackendCounters(); c["truncated"] != 1 || len(c) != 5 {
		t.Errorf("backend counters %v: want truncated=1, and frames-in, ring-drops, super-frames and partial-csum", c)
	}
}

// A frame longer than the device's MTU in the middle of a batch: Write
// sends the frames before it and says frame.ErrTooBig for it (so that the
// switch counts it too-big), and the frames after it go with the next
// Write; none of the others is lost.
func TestWriteStopsAtATooBigFrame(t *testing.T) {
	_, phys, p := uplinkNS(t)
	wire := phys.Raw(t, "eth0")
	small1, small2 := testFrame(0, "before the jumbo frame"), testFrame(0, "after the jumbo frame")
	big := append(testFrame(0, "jumbo"), make([]byte, 3000)...) // the veth's MTU is 1500
	const head = 64
	bufs, offs := [][]byte{}, []int{}
	for _, f := range [][]byte{small1, big, small2} {
		bufs, offs = append(bufs, append(make([]byte, head), f...)), append(offs, head)
	}
	n, err := p.Write(bufs, offs)
	if n != 1 || !errors.Is(err, frame.ErrTooBig) {
		t.Fatalf("Write of small, jumbo, small = %d, %v; want 1 and frame.ErrTooBig", n, err)
	}
	if n, err := p.Write(bufs[2:], offs[2:]); n != 1 || err != nil {
		t.Fatalf("Write of the rest = %d, %v", n, err)
	}
	for _, want := range [][]byte{small1, small2} {
		f := wire.Recv(5 * time.Second)
		if !bytes.Equal(f, want) {
			t.Fatalf("on the wire: %q, want %q", f, want)
		}
	}
}
