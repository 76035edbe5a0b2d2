package frame

import (
	"bytes"
	"errors"
	"testing"
)

var (
	testDst = MAC{0x02, 0, 0, 0, 0, 0x02}
	testSrc = MAC{0x02, 0, 0, 0, 0, 0x01}
)

// untaggedFrame returns a minimal IPv4 frame with a recognisable payload.
func untaggedFrame() []byte {
	b := append(append([]byte{}, testDst[:]...), testSrc[:]...)
	b = append(b, 0x08, 0x00)
	return append(b, []byte("payload")...)
}

func taggedFrame(tci TCI) []byte {
	b := append(append([]byte{}, testDst[:]...), testSrc[:]...)
	b = append(b, 0x81, 0x00, byte(tci>>8), byte(tci), 0x08, 0x00)
	return append(b, []byte("payload")...)
}

func TestEthernetView(t *testing.T) {
	e := Ethernet(untaggedFrame())
	if err := e.Check(); err != nil {
		t.Fatal(err)
	}
	if e.Dst() != testDst || e.Src() != testSrc || e.Tagged() || e.EtherType() != 0x0800 || e.PayloadOffset() != 14 {
		t.Fatalf("untagged view wrong: %v %v %v %#x %d", e.Dst(), e.Src(), e.Tagged(), e.EtherType(), e.PayloadOffset())
	}
	tg := Ethernet(taggedFrame(MakeTCI(3, false, 42)))
	if err := tg.Check(); err != nil {
		t.Fatal(err)
	}
	if !tg.Tagged() || tg.TCI().VID() != 42 || tg.TCI().PCP() != 3 || tg.EtherType() != 0x0800 || tg.PayloadOffset() != 18 {
		t.Fatalf("tagged view wrong")
	}
	if string(tg[tg.PayloadOffset():]) != "payload" {
		t.Fatalf("payload = %q", tg[tg.PayloadOffset():])
	}
	qinq := Ethernet(untaggedFrame())
	qinq[12], qinq[13] = 0x88, 0xa8
	if qinq.Tagged() {
		t.Fatal("an S-tag (0x88a8) must be payload, not an 802.1Q tag")
	}
}

func TestEthernetCheck(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrRunt},
		{"13 bytes", untaggedFrame()[:13], ErrRunt},
		{"header only", untaggedFrame()[:14], nil},
		{"tag cut", taggedFrame(1)[:17], ErrTruncatedTag},
		{"tag header only", taggedFrame(1)[:18], nil},
	}
	for _, tt := range tests {
		if err := Ethernet(tt.b).Check(); !errors.Is(err, tt.want) {
			t.Errorf("%s: Check = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestPushPopTag(t *testing.T) {
	const head = 8
	orig := untaggedFrame()
	buf := append(make([]byte, head), orig...)
	tci := MakeTCI(6, true, 300)
	off, err := PushTag(buf, head, tci)
	if err != nil || off != head-TagLen {
		t.Fatalf("PushTag = %d, %v", off, err)
	}
	if want := taggedFrame(tci); !bytes.Equal(buf[off:], want) {
		t.Fatalf("pushed frame\n got %x\nwant %x", buf[off:], want)
	}
	off2, got, err := PopTag(buf, off)
	if err != nil || off2 != head || got != tci {
		t.Fatalf("PopTag = %d, %v, %v", off2, got, err)
	}
	if !bytes.Equal(buf[off2:], orig) {
		t.Fatalf("popped frame\n got %x\nwant %x", buf[off2:], orig)
	}
	if _, err := PushTag(buf, 3, tci); !errors.Is(err, ErrNoHeadroom) {
		t.Errorf("push without headroom: %v", err)
	}
	if _, err := PushTag(buf[:head+10], head, tci); !errors.Is(err, ErrRunt) {
		t.Errorf("push on runt: %v", err)
	}
	if _, _, err := PopTag(buf, head); !errors.Is(err, ErrNotTagged) {
		t.Errorf("pop untagged: %v", err)
	}
	if _, _, err := PopTag(taggedFrame(1)[:16], 0); !errors.Is(err, ErrTruncatedTag) {
		t.Errorf("pop truncated: %v", err)
	}
}

func TestFrameZeroAllocs(t *testing.T) {
	buf := append(make([]byte, 64), untaggedFrame()...)
	var sink uint64
	allocs := testing.AllocsPerRun(1000, func() {
		e := Ethernet(buf[64:])
		if e.Check() == nil && e.Src().IsUnicastStation() && !e.Dst().IsReservedGroup() {
			sink += uint64(e.EtherType()) + uint64(e.PayloadOffset())
		}
		off, _ := PushTag(buf, 64, MakeTCI(0, false, 10))
		e = Ethernet(buf[off:])
		sink += uint64(e.TCI().VID())
		PopTag(buf, off)
	})
	if allocs != 0 {
		t.Fatalf("parse + push + pop allocated %v times per frame, want 0", allocs)
	}
	_ = sink
}

func FuzzEthernet(f *testing.F) {
	f.Add(untaggedFrame())
	f.Add(taggedFrame(MakeTCI(1, false, 10)))
	f.Add(taggedFrame(4095)[:17])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e := Ethernet(b)
		if err := e.Check(); err != nil {
			return
		}
		// Every accessor is safe after Check, and the payload offset is in range.
		_, _, _ = e.Dst(), e.Src(), e.EtherType()
		if e.Tagged() {
			_ = e.TCI().VID()
		}
		if p := e.PayloadOffset(); p > len(b) {
			t.Fatalf("payload offset %d beyond frame length %d", p, len(b))
		}
	})
}

func FuzzTagRoundTrip(f *testing.F) {
	f.Add(untaggedFrame(), uint16(MakeTCI(0, false, 10)))
	f.Add(taggedFrame(MakeTCI(2, false, 20)), uint16(MakeTCI(7, true, 4094)))
	f.Add(make([]byte, 14), uint16(0))
	f.Fuzz(func(t *testing.T, b []byte, tci uint16) {
		buf := append(make([]byte, TagLen), b...)
		off, err := PushTag(buf, TagLen, TCI(tci))
		if err != nil {
			if len(b) >= HeaderLen {
				t.Fatalf("PushTag on a %d-byte frame: %v", len(b), err)
			}
			return
		}
		e := Ethernet(buf[off:])
		if !e.Tagged() || e.TCI() != TCI(tci) || e.Dst() != MAC(b[0:6]) || e.Src() != MAC(b[6:12]) {
			t.Fatalf("pushed frame has wrong header: %x", buf[off:])
		}
		back, got, err := PopTag(buf, off)
		if err != nil || got != TCI(tci) || back != TagLen || !bytes.Equal(buf[back:], b) {
			t.Fatalf("push→pop not identity: %x → %x (%v)", b, buf[back:], err)
		}
	})
}
