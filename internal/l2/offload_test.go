package l2

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

// superFrame builds an IPv4 TCP (or UDP) super-frame from src to dst with
// payload bytes of data, as a Linux sender with TSO/USO hands it over: the
// L4 checksum field holds the pseudo-header sum (partial checksum), and the
// virtio-net header says where it is and how to cut the payload (mss).
func superFrame(dst, src frame.MAC, vid int, udp bool, payload, mss int) (offload.VnetHdr, []byte) {
	b := append(append([]byte{}, dst[:]...), src[:]...)
	if vid != noTag {
		b = binary.BigEndian.AppendUint16(b, frame.TPID8021Q)
		b = binary.BigEndian.AppendUint16(b, uint16(frame.MakeTCI(3, false, frame.VID(vid))))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	l3 := len(b)
	l4len, proto, gso, csumOff := 20+payload, byte(6), uint8(offload.GSOTCPv4), 16
	if udp {
		l4len, proto, gso, csumOff = 8+payload, 17, offload.GSOUDPL4, 6
	}
	ip := []byte{0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+l4len))
	binary.BigEndian.PutUint16(ip[10:], offload.Checksum(ip))
	b = append(b, ip...)
	l4 := len(b)
	if udp {
		b = append(b, 0x30, 0x39, 0x00, 0x35, byte(l4len>>8), byte(l4len), 0, 0)
	} else {
		b = append(b, 0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0)
	}
	for i := range payload {
		b = append(b, byte(i*7))
	}
	pseudo := append(append([]byte{}, ip[12:20]...), 0, proto, byte(l4len>>8), byte(l4len))
	binary.BigEndian.PutUint16(b[l4+csumOff:], ^offload.Checksum(pseudo))
	h := offload.VnetHdr{Flags: offload.FlagNeedsCsum, GSOType: gso, HdrLen: uint16(l4 + l4len - payload),
		GSOSize: uint16(mss), CsumStart: uint16(l4), CsumOffset: uint16(csumOff)}
	if l3 != frame.HeaderLen && l3 != frame.HeaderLen+frame.TagLen {
		panic("bad layout")
	}
	return h, b
}

// withHdr is frame f with header h in front, as a Vnet port carries it.
func withHdr(h offload.VnetHdr, f []byte) []byte {
	b := make([]byte, offload.VnetHdrLen, offload.VnetHdrLen+len(f))
	h.Encode(b)
	return append(b, f...)
}

// sendVnet injects header+frame pairs (withHdr) into a Vnet port.
func (h *harness) sendVnet(port string, frames ...[]byte) {
	h.t.Helper()
	h.inject(port, frames, offload.VnetHdrLen)
}

// recvVnet returns the (header, frame) pairs waiting at a Vnet port.
func (h *harness) recvVnet(port string) (hdrs []offload.VnetHdr, frames [][]byte) {
	h.t.Helper()
	p := h.peers[port]
	bufs, sizes := makeBufs(4, offload.VnetHdrLen+MaxSuperFrame+frame.TagLen+1), make([]int, 4)
	for p.Queued() > 0 {
		n, err := p.Read(bufs, sizes, offload.VnetHdrLen)
		if err != nil {
			h.t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			hd, _ := offload.DecodeVnetHdr(bufs[i])
			hdrs = append(hdrs, hd)
			frames = append(frames, append([]byte(nil), bufs[i][offload.VnetHdrLen:offload.VnetHdrLen+sizes[i]]...))
		}
	}
	return hdrs, frames
}

// l4Verifies reports whether the IPv4 TCP/UDP frame f (tagged or not) has a
// complete, correct L4 checksum.
func l4Verifies(f []byte) bool {
	l3 := frame.Ethernet(f).PayloadOffset()
	ip := f[l3 : l3+20]
	l4 := f[l3+20:]
	pseudo := append(append([]byte{}, ip[12:20]...), 0, ip[9], byte(len(l4)>>8), byte(len(l4)))
	return offload.Checksum(append(pseudo, l4...)) == 0
}

// completed returns f with its partial checksum finished as h says.
func completed(t *testing.T, h offload.VnetHdr, f []byte) []byte {
	t.Helper()
	g := append([]byte(nil), f...)
	if err := offload.CompleteChecksum(g, int(h.CsumStart), int(h.CsumOffset)); err != nil {
		t.Fatal(err)
	}
	return g
}

var (
	superVM    = mem.Config{Offloads: offload.All, MaxFrame: 70000}
	superPlain = mem.Config{}
)

// A super-frame from an access port leaves a trunk that takes TSO as one
// tagged super-frame whose header moved with the tag, and a trunk that
// does not as wire-sized tagged segments with complete checksums.
func TestSuperFrameTaggedOnTrunks(t *testing.T) {
	for _, udp := range []bool{false, true} {
		h := newHarness(t, Options{})
		h.addWith("vm", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, superVM)
		h.addWith("fast", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, superVM)
		h.addWith("plain", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, superPlain)
		hd, f := superFrame(mac(2), mac(1), noTag, udp, 20000, 1448)
		h.sendVnet("vm", withHdr(hd, f))

		hdrs, got := h.recvVnet("fast")
		if len(got) != 1 {
			t.Fatalf("udp=%v: TSO trunk got %d frames, want the one super-frame", udp, len(got))
		}
		want := hd.Shift(frame.TagLen)
		if hdrs[0] != want {
			t.Errorf("udp=%v: header %+v, want %+v (offsets moved by the tag)", udp, hdrs[0], want)
		}
		if e := frame.Ethernet(got[0]); !e.Tagged() || e.TCI().VID() != 10 || len(got[0]) != len(f)+frame.TagLen {
			t.Fatalf("udp=%v: super-frame not tagged 10 (or resized): %x", udp, got[0][:20])
		}
		if !l4Verifies(completed(t, hdrs[0], got[0])) {
			t.Errorf("udp=%v: the partial checksum no longer completes to a valid one after the tag push", udp)
		}

		segs := h.recv("plain")
		if len(segs) != 14 { // 20,000 / 1,448 rounded up
			t.Fatalf("udp=%v: plain trunk got %d frames, want 14 segments", udp, len(segs))
		}
		var payload []byte
		for i, s := range segs {
			e := frame.Ethernet(s)
			if !e.Tagged() || e.TCI().VID() != 10 || e.TCI().PCP() != 0 || !l4Verifies(s) || len(s) > 14+4+28+20+1448 {
				t.Fatalf("udp=%v: segment %d (%d bytes) not a tagged, wire-sized frame with a valid checksum", udp, i, len(s))
			}
			hl := e.PayloadOffset() + 20 + 20
			if udp {
				hl = e.PayloadOffset() + 20 + 8
			}
			payload = append(payload, s[hl:]...)
		}
		if !bytes.Equal(payload, f[len(f)-20000:]) {
			t.Errorf("udp=%v: the segments' payloads do not add up to the super-frame's", udp)
		}
		if c := h.counters("plain"); c.Segmented != 1 || c.TxPackets != 14 {
			t.Errorf("udp=%v: plain port counters %+v: want 1 segmented, 14 sent", udp, c)
		}
		if c := h.counters("fast"); c.Segmented != 0 || c.TxPackets != 1 {
			t.Errorf("udp=%v: TSO port counters %+v: want 1 sent whole", udp, c)
		}
	}
}

// A tagged super-frame from a trunk leaves an access port untagged, whole,
// with its header moved back.
func TestSuperFrameUntaggedOnAccess(t *testing.T) {
	h := newHarness(t, Options{})
	h.addWith("trunk", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10,20"), 0))}, superVM)
	h.addWith("vm10", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, superVM)
	h.addWith("vm20", PortConfig{VLAN: mustVLAN(vlan.Access(20))}, superVM)
	hd, f := superFrame(mac(2), mac(1), 10, false, 30000, 1448)
	h.sendVnet("trunk", withHdr(hd, f))
	hdrs, got := h.recvVnet("vm10")
	if len(got) != 1 || frame.Ethernet(got[0]).Tagged() || len(got[0]) != len(f)-frame.TagLen {
		t.Fatalf("access port got %d frames; want one untagged super-frame", len(got))
	}
	if want := hd.Shift(-frame.TagLen); hdrs[0] != want {
		t.Errorf("header %+v, want %+v", hdrs[0], want)
	}
	if !l4Verifies(completed(t, hdrs[0], got[0])) {
		t.Error("the partial checksum does not complete to a valid one after the tag pop")
	}
	if _, other := h.recvVnet("vm20"); len(other) != 0 {
		t.Errorf("VLAN 20's port got %d frames of VLAN 10", len(other))
	}
}

// A frame with a partial checksum (not a super-frame) stays partial
// between ports that take it; if any target cannot, the switch completes
// it once, for all, and says so in the header.
func TestPartialChecksum(t *testing.T) {
	h := newHarness(t, Options{})
	h.addWith("a", PortConfig{}, superVM)
	h.addWith("b", PortConfig{}, superVM)
	hd, f := superFrame(mac(2), mac(1), noTag, true, 100, 0)
	hd.GSOType, hd.GSOSize = offload.GSONone, 0
	h.sendVnet("b", withHdr(offload.VnetHdr{}, ethFrame(mac(1), mac(2), noTag, 0, 1))) // learn mac(2) on b
	h.recvVnet("a")
	h.sendVnet("a", withHdr(hd, f))
	hdrs, got := h.recvVnet("b")
	if len(got) != 1 || hdrs[0] != hd || !bytes.Equal(got[0], f) {
		t.Fatalf("between offload ports: %d frames, header %+v; want the frame and header unchanged", len(got), hdrs)
	}

	h.addWith("plain", PortConfig{}, superPlain)
	bc := append([]byte(nil), f...)
	copy(bc, frame.Broadcast[:])
	h.sendVnet("a", withHdr(hd, bc))
	plain := h.recv("plain")
	hdrs, got = h.recvVnet("b")
	if len(plain) != 1 || !l4Verifies(plain[0]) {
		t.Fatalf("plain port: %d frames; want one with a complete checksum", len(plain))
	}
	if len(got) != 1 || hdrs[0].Flags&offload.FlagNeedsCsum != 0 || !l4Verifies(got[0]) {
		t.Fatalf("offload port beside a plain one: header %+v; want the checksum completed and not marked partial", hdrs)
	}
}

// A header that does not fit its frame is counted and the frame dropped.
func TestBadOffloadDropped(t *testing.T) {
	h := newHarness(t, Options{})
	h.addWith("a", PortConfig{}, superVM)
	h.add("b", PortConfig{})
	f := ethFrame(mac(2), mac(1), noTag, 0, 1)
	bad := []offload.VnetHdr{
		{Flags: offload.FlagNeedsCsum, CsumStart: 60, CsumOffset: 6},
		{GSOType: offload.GSOTCPv4},              // no segment size
		{GSOType: offload.GSOUDP, GSOSize: 1000}, // UFO: not taken
	}
	for _, hd := range bad {
		h.sendVnet("a", withHdr(hd, f))
	}
	if got := h.recv("b"); len(got) != 0 {
		t.Errorf("%d frames with bad headers forwarded", len(got))
	}
	if c := h.counters("a"); c.Drops[DropBadOffload] != uint64(len(bad)) {
		t.Errorf("bad-offload drops = %d, want %d", c.Drops[DropBadOffload], len(bad))
	}
	// A super-frame whose headers cannot be cut (not TCP) reaching a plain
	// port is counted there.
	hd, sf := superFrame(mac(2), mac(1), noTag, false, 5000, 1000)
	sf[23] = 47 // GRE, not TCP
	h.sendVnet("a", withHdr(hd, sf))
	if got := h.recv("b"); len(got) != 0 || h.counters("b").Drops[DropBadOffload] != 1 {
		t.Errorf("uncuttable super-frame: %d frames out, counters %+v", len(got), h.counters("b"))
	}
}

// Hybrid flood: one super-frame leaves tagged on one port and untagged on
// another (the second copy), each with its own header offsets.
func TestSuperFrameMixedFlood(t *testing.T) {
	h := newHarness(t, Options{})
	h.addWith("in", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, superVM)
	h.addWith("u", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, superVM)
	h.addWith("t", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, superVM)
	hd, f := superFrame(frame.Broadcast, mac(1), noTag, false, 9000, 1448)
	h.sendVnet("in", withHdr(hd, f))
	uh, u := h.recvVnet("u")
	th, tg := h.recvVnet("t")
	if len(u) != 1 || len(tg) != 1 || uh[0] != hd || th[0] != hd.Shift(frame.TagLen) {
		t.Fatalf("untagged copy %d frames %+v, tagged copy %d frames %+v", len(u), uh, len(tg), th)
	}
	if !bytes.Equal(u[0], f) || !frame.Ethernet(tg[0]).Tagged() {
		t.Fatal("copies differ from the super-frame beyond the tag")
	}
}

func TestSegmentZeroAllocs(t *testing.T) {
	h := newHarness(t, Options{})
	h.addWith("vm", PortConfig{}, superVM)
	h.addWith("plain", PortConfig{}, mem.Config{QueueLen: 4096})
	hd, f := superFrame(mac(2), mac(1), noTag, false, 60000, 1448)
	in := withHdr(hd, f)
	pe := h.s.byName["vm"]
	peer, out := h.peers["vm"], h.peers["plain"]
	once := func() {
		peer.Write([][]byte{in}, []int{offload.VnetHdrLen})
		pe.r.step()
		for out.Queued() > 0 {
			out.Read(h.bufs, h.sizes, 0)
		}
	}
	once()
	if allocs := testing.AllocsPerRun(50, once); allocs != 0 {
		t.Errorf("cutting a super-frame for a plain port allocated %v times, want 0", allocs)
	}
	if c := h.counters("plain"); c.Segmented != 52 || c.TxPackets != 52*42 {
		t.Errorf("counters %+v: want 52 super-frames cut into 42 segments each", c)
	}
}

// BenchmarkSuperFrame measures one 64 KiB TCP super-frame (45 segments'
// worth) from an access port, whole to a trunk that takes TSO (tag pushed,
// header shifted) and cut for a plain one; b.SetBytes makes go test print
// the payload rate.
func BenchmarkSuperFrame(b *testing.B) {
	for _, c := range []struct {
		name string
		out  mem.Config
	}{{"whole", mem.Config{Offloads: offload.All, MaxFrame: 70000, QueueLen: 16}}, {"segmented", mem.Config{QueueLen: 256}}} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, Options{})
			h.addWith("vm", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, mem.Config{Offloads: offload.All, MaxFrame: 70000, QueueLen: 16})
			h.addWith("out", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, c.out)
			hd, f := superFrame(mac(2), mac(1), noTag, false, 65000, 1448)
			in := [][]byte{withHdr(hd, f)}
			offs := []int{offload.VnetHdrLen}
			pe, peer, out := h.s.byName["vm"], h.peers["vm"], h.peers["out"]
			bufs, sizes := makeBufs(64, 70100), make([]int, 64)
			b.SetBytes(65000)
			b.ReportAllocs()
			for b.Loop() {
				peer.Write(in, offs)
				pe.r.step()
				for out.Queued() > 0 {
					out.Read(bufs, sizes, offload.VnetHdrLen)
				}
			}
		})
	}
}

// FuzzOffloadForward feeds arbitrary virtio-net headers and frames into a
// port with offloads whose frames go to a TSO trunk, a plain trunk and a
// plain access port: nothing panics, every frame is forwarded or counted,
// and nothing longer than the switch's maximum frame reaches a plain port.
func FuzzOffloadForward(f *testing.F) {
	hd, sf := superFrame(frame.Broadcast, mac(1), noTag, false, 3000, 1000)
	hb := make([]byte, offload.VnetHdrLen)
	hd.Encode(hb)
	f.Add(hb, sf)
	hd, sf = superFrame(frame.Broadcast, mac(1), noTag, true, 100, 0)
	hd.GSOType, hd.GSOSize = offload.GSONone, 0
	hd.Encode(hb)
	f.Add(append([]byte(nil), hb...), sf)
	f.Add(make([]byte, offload.VnetHdrLen), ethFrame(frame.Broadcast, mac(1), noTag, 0, 1))
	f.Fuzz(func(t *testing.T, hdr, fr []byte) {
		if len(hdr) < offload.VnetHdrLen || len(fr) > 60000 {
			return
		}
		h := newHarness(t, Options{})
		small := mem.Config{Offloads: offload.All, MaxFrame: 70000, QueueLen: 4}
		h.addWith("vm", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, small)
		h.addWith("tso", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, small)
		h.addWith("plain", PortConfig{VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}, mem.Config{QueueLen: 128})
		h.addWith("access", PortConfig{VLAN: mustVLAN(vlan.Access(10))}, mem.Config{QueueLen: 128})
		h.sendVnet("vm", append(append([]byte(nil), hdr[:offload.VnetHdrLen]...), fr...))
		if c := h.counters("vm"); c.RxPackets != 1 {
			t.Fatalf("rx %d, want 1", c.RxPackets)
		}
		h.recvVnet("tso")
		for _, p := range []string{"plain", "access"} {
			for _, out := range h.recv(p) {
				if len(out) > DefaultMaxFrameSize {
					t.Fatalf("%d-byte frame reached plain port %s", len(out), p)
				}
			}
		}
	})
}
