package l2

import (
	"fmt"
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

// pump is a hand-stepped two-or-more-port switch for allocation tests and
// benchmarks: the test writes a batch into one port, steps that port's
// reader once, and drains the others, all on one goroutine.
type pump struct {
	h      *harness
	in     *mem.Port // the test's end of the ingress port
	r      *reader
	outs   []*mem.Port
	batch  [][]byte
	offs   []int
	bufs   [][]byte
	sizes  []int
	frames int // frames received in total
}

func newPump(tb testing.TB, inCfg PortConfig, outCfgs []PortConfig, batch [][]byte) *pump {
	h := newHarness(tb, Options{})
	h.add("in", inCfg)
	p := &pump{h: h, in: h.peers["in"], r: h.s.byName["in"].r, batch: batch, offs: make([]int, len(batch)),
		bufs: makeBufs(len(batch), 2048), sizes: make([]int, len(batch))}
	for i, c := range outCfgs {
		name := fmt.Sprint("out", i)
		h.add(name, c)
		p.outs = append(p.outs, h.peers[name])
	}
	return p
}

// once pushes one batch through the switch and drains every egress port.
func (p *pump) once(tb testing.TB) {
	if n, _ := p.in.Write(p.batch, p.offs); n != len(p.batch) {
		tb.Fatalf("ingress queue took %d of %d", n, len(p.batch))
	}
	if err := p.r.step(); err != nil {
		tb.Fatal(err)
	}
	for _, o := range p.outs {
		for o.Queued() > 0 {
			n, _ := o.Read(p.bufs, p.sizes, 0)
			p.frames += n
		}
	}
}

func unicastBatch(n int, dst, src frame.MAC, vid int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = ethFrame(dst, src, vid, 0, uint32(i)) // 64 bytes untagged, 68 tagged
	}
	return b
}

var forwardCases = []struct {
	name    string
	in, out PortConfig
	vid     int
}{
	{"untagged", PortConfig{MAC: mac(1)}, PortConfig{MAC: mac(2)}, noTag},
	{"trunk-to-access", PortConfig{MAC: mac(1), VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("1-4094"), 0))},
		PortConfig{MAC: mac(2), VLAN: mustVLAN(vlan.Access(10))}, 10},
	{"access-to-trunk", PortConfig{MAC: mac(1), VLAN: mustVLAN(vlan.Access(10))},
		PortConfig{MAC: mac(2), VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("1-4094"), 0))}, noTag},
}

func TestForwardZeroAllocs(t *testing.T) {
	for _, c := range forwardCases {
		p := newPump(t, c.in, []PortConfig{c.out}, unicastBatch(64, mac(2), mac(1), c.vid))
		p.once(t) // warm up
		if allocs := testing.AllocsPerRun(200, func() { p.once(t) }); allocs != 0 {
			t.Errorf("%s: a 64-frame forwarding pass allocated %v times, want 0", c.name, allocs)
		}
		if p.frames != 202*64 { // AllocsPerRun runs once more to warm up
			t.Errorf("%s: %d frames arrived, want %d", c.name, p.frames, 202*64)
		}
	}
	// A flood that leaves tagged on some ports and untagged on others
	// needs the second copy: allocated once, then reused.
	outs := []PortConfig{{VLAN: mustVLAN(vlan.Access(10))}, {VLAN: mustVLAN(vlan.Trunk(frame.MustParseVLANSet("10"), 0))}}
	p := newPump(t, PortConfig{VLAN: mustVLAN(vlan.Access(10))}, outs, unicastBatch(64, frame.Broadcast, mac(1), noTag))
	p.once(t)
	if allocs := testing.AllocsPerRun(200, func() { p.once(t) }); allocs != 0 {
		t.Errorf("mixed-tag flood allocated %v times per batch, want 0", allocs)
	}
}

// BenchmarkForward measures known-unicast 64-byte frames between two ports,
// including the in-memory ports' copies in and out, on one goroutine.
func BenchmarkForward(b *testing.B) {
	for _, c := range forwardCases {
		b.Run(c.name, func(b *testing.B) {
			p := newPump(b, c.in, []PortConfig{c.out}, unicastBatch(64, mac(2), mac(1), c.vid))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 64 {
				p.once(b)
			}
			b.ReportMetric(float64(p.frames)/b.Elapsed().Seconds()/1e6, "Mframes/s")
		})
	}
}

// BenchmarkFlood measures broadcast into a 16-port VLAN: each frame goes
// out of 15 ports. ns/op is per ingress frame.
func BenchmarkFlood(b *testing.B) {
	outs := make([]PortConfig, 15)
	p := newPump(b, PortConfig{}, outs, unicastBatch(64, frame.Broadcast, mac(1), noTag))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += 64 {
		p.once(b)
	}
	b.ReportMetric(float64(p.frames)/b.Elapsed().Seconds()/1e6, "Mcopies/s")
}

// BenchmarkForwardScale compares known-unicast forwarding between two
// ports of a two-port switch with the same on a switch of 256 ports whose
// MAC table holds 1 M learned entries (spread over the other 254 ports):
// the issue wants the second within 10 % of the first. bench/scale prints
// the ratio.
func BenchmarkForwardScale(b *testing.B) {
	for _, c := range []struct {
		name        string
		ports, macs int
	}{{"ports=2", 2, 0}, {"ports=256,macs=1M", 256, 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, Options{FDBSize: c.macs + 1024})
			h.add("in", PortConfig{MAC: mac(1)})
			h.add("out", PortConfig{MAC: mac(2)})
			small := mem.Config{QueueLen: 4, BatchSize: 1}
			for i := 2; i < c.ports; i++ {
				h.addWith(fmt.Sprint("p", i), PortConfig{}, small)
			}
			now := h.s.now()
			for i := 0; i < c.macs; i++ {
				if res, _ := h.s.fdb.Learn(1, macN(i+1000), PortID(2+i%(c.ports-2)), 0, now); res == RefusedFull {
					b.Fatalf("table full after %d entries", i)
				}
			}
			if got := h.s.fdb.Learned(); got < c.macs {
				b.Fatalf("%d entries learned, want %d", got, c.macs)
			}
			p := &pump{h: h, in: h.peers["in"], r: h.s.byName["in"].r, outs: []*mem.Port{h.peers["out"]},
				batch: unicastBatch(64, mac(2), mac(1), noTag), offs: make([]int, 64),
				bufs: makeBufs(64, 2048), sizes: make([]int, 64)}
			p.once(b)
			p.frames = 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 64 {
				p.once(b)
			}
			b.ReportMetric(float64(p.frames)/b.Elapsed().Seconds()/1e6, "Mframes/s")
		})
	}
}
