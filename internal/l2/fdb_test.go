package l2

import (
	"fmt"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
)

const sec = int64(time.Second)

func TestFDBLearnLookupAge(t *testing.T) {
	f := NewFDB(0, 300*time.Second)
	if res, _ := f.Learn(10, mac(1), 3, 0, 0); res != Learned {
		t.Fatalf("first learn = %v, want Learned", res)
	}
	if res, _ := f.Learn(10, mac(1), 3, 0, 5*sec); res != Refreshed {
		t.Fatalf("second learn = %v, want Refreshed", res)
	}
	if p, ok := f.Lookup(10, mac(1), 6*sec); !ok || p != 3 {
		t.Fatalf("lookup = %v, %v", p, ok)
	}
	if _, ok := f.Lookup(20, mac(1), 6*sec); ok {
		t.Fatal("entry of VLAN 10 found in VLAN 20: the table must key by (VLAN, MAC)")
	}
	// Last seen at 5 s (the refresh granularity is ageing/64 ≈ 4.7 s): alive
	// until 305 s, gone after.
	if _, ok := f.Lookup(10, mac(1), 304*sec); !ok {
		t.Fatal("entry aged out early")
	}
	if _, ok := f.Lookup(10, mac(1), 306*sec); ok {
		t.Fatal("entry did not age out")
	}
	if n := len(allEntries(t, f, 306*sec, 10, nil)); n != 0 {
		t.Fatalf("Entries lists %d aged entries", n)
	}
	if n := f.Expire(306 * sec); n != 1 || f.Learned() != 0 || f.PortLearned(3) != 0 {
		t.Fatalf("Expire = %d, learned %d, port %d", n, f.Learned(), f.PortLearned(3))
	}
}

func TestFDBMove(t *testing.T) {
	f := NewFDB(0, 0)
	f.Learn(1, mac(1), 1, 0, 0)
	res, old := f.Learn(1, mac(1), 2, 0, sec)
	if res != Moved || old != 1 {
		t.Fatalf("learn on another port = %v from %d, want Moved from 1", res, old)
	}
	if p, _ := f.Lookup(1, mac(1), sec); p != 2 {
		t.Fatalf("after move the entry points to %d", p)
	}
	if f.PortLearned(1) != 0 || f.PortLearned(2) != 1 {
		t.Fatalf("per-port counts after move: %d, %d", f.PortLearned(1), f.PortLearned(2))
	}
	// A station that reappears elsewhere after its entry aged is learned, not moved.
	if res, _ := f.Learn(1, mac(1), 3, 0, 400*sec); res != Learned {
		t.Fatalf("learn after ageing = %v, want Learned", res)
	}
}

func TestFDBStatic(t *testing.T) {
	f := NewFDB(0, 0)
	f.Learn(7, mac(9), 2, 0, 0) // learned somewhere else first
	f.AddStatic(AnyVLAN, mac(9), 1)
	if p, ok := f.Lookup(7, mac(9), 0); !ok || p != 1 {
		t.Fatalf("static owner lookup = %v, %v; the learned entry on port 2 must be gone", p, ok)
	}
	res, owner := f.Learn(7, mac(9), 2, 0, sec)
	if res != RefusedStatic || owner != 1 {
		t.Fatalf("learn of a static MAC on another port = %v (owner %d), want RefusedStatic (1)", res, owner)
	}
	if res, _ := f.Learn(7, mac(9), 1, 0, sec); res != Refreshed {
		t.Fatalf("learn of a static MAC on its own port = %v", res)
	}
	if _, ok := f.Lookup(7, mac(9), 10_000*sec); !ok {
		t.Fatal("static entry aged")
	}
	f.AddStatic(5, mac(8), 4)
	if res, _ := f.Learn(5, mac(8), 2, 0, 0); res != RefusedStatic {
		t.Fatalf("per-VLAN static moved by learning: %v", res)
	}
	if f.FlushAll() != 0 || len(allEntries(t, f, 0, 10, nil)) != 2 {
		t.Fatal("FlushAll removed static entries")
	}
	if !f.RemoveStatic(AnyVLAN, mac(9)) || f.RemoveStatic(AnyVLAN, mac(9)) {
		t.Fatal("RemoveStatic")
	}
	if res, _ := f.Learn(7, mac(9), 2, 0, 0); res != Learned {
		t.Fatalf("learn after the static entry went = %v", res)
	}
}

func TestFDBBounds(t *testing.T) {
	f := NewFDB(4, 0)
	for i := range 4 {
		if res, _ := f.Learn(1, mac(byte(i)), 1, 0, 0); res != Learned {
			t.Fatalf("learn %d = %v", i, res)
		}
	}
	if res, _ := f.Learn(1, mac(100), 2, 0, 0); res != RefusedFull {
		t.Fatalf("learn into a full table = %v, want RefusedFull", res)
	}
	if _, ok := f.Lookup(1, mac(100), 0); ok {
		t.Fatal("refused address is in the table")
	}
	if res, _ := f.Learn(1, mac(0), 1, 0, 0); res != Refreshed {
		t.Fatalf("known address in a full table = %v", res)
	}
	f.AddStatic(AnyVLAN, mac(200), 3) // statics do not count against the bound
	if f.Learned() != 4 {
		t.Fatalf("learned = %d", f.Learned())
	}
	f.Expire(400 * sec)
	if res, _ := f.Learn(1, mac(100), 2, 0, 400*sec); res != Learned {
		t.Fatalf("learn after expiry freed room = %v", res)
	}

	g := NewFDB(0, 0)
	for i := range 3 {
		g.Learn(1, mac(byte(i)), 1, 3, 0)
	}
	if res, _ := g.Learn(1, mac(50), 1, 3, 0); res != RefusedPortLimit {
		t.Fatalf("learn past the port limit = %v", res)
	}
	if res, _ := g.Learn(1, mac(50), 2, 3, 0); res != Learned {
		t.Fatalf("another port is not limited by port 1's entries: %v", res)
	}
	if res, _ := g.Learn(1, mac(50), 1, 3, 0); res != RefusedPortLimit {
		t.Fatalf("a move onto a port at its limit = %v", res)
	}
}

func TestFDBFlush(t *testing.T) {
	f := NewFDB(0, 0)
	for i := range 6 {
		f.Learn(frame.VID(1+i%2), mac(byte(i)), PortID(i%3), 0, 0)
	}
	f.AddStatic(AnyVLAN, mac(99), 0)
	if n := f.FlushVLAN(2); n != 3 {
		t.Fatalf("FlushVLAN removed %d, want 3", n)
	}
	if n := f.FlushPort(0, false); n != 1 { // mac(0) on VLAN 1; mac(3) was VLAN 2
		t.Fatalf("FlushPort removed %d, want 1", n)
	}
	if n := f.FlushPort(0, true); n != 1 {
		t.Fatalf("FlushPort with statics removed %d, want the static", n)
	}
	if n := f.FlushAll(); n != 2 || f.Learned() != 0 {
		t.Fatalf("FlushAll removed %d, %d left", n, f.Learned())
	}
	for p := range 3 {
		if f.PortLearned(PortID(p)) != 0 {
			t.Fatalf("port %d still counts %d entries", p, f.PortLearned(PortID(p)))
		}
	}
}

func TestFDBZeroAllocs(t *testing.T) {
	f := NewFDB(0, 0)
	for i := range 1000 {
		f.Learn(1, macN(i), PortID(i%8), 0, 0)
	}
	i := 0
	allocs := testing.AllocsPerRun(10000, func() {
		m := macN(i % 1000)
		f.Learn(1, m, PortID(i%8), 0, int64(i))
		f.Lookup(1, m, int64(i))
		f.Lookup(2, m, int64(i)) // miss: falls through to the any-VLAN static lookup
		i++
	})
	if allocs != 0 {
		t.Fatalf("learn + lookup allocated %v times, want 0", allocs)
	}
	j := 0
	allocs = testing.AllocsPerRun(1000, func() { // new entries into a table with room
		f.Learn(3, macN(j), 1, 0, 0)
		j++
	})
	if allocs != 0 {
		t.Fatalf("learning a new address allocated %v times, want 0", allocs)
	}
}

func macN(i int) frame.MAC {
	return frame.MAC{0x02, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func BenchmarkFDB(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		f := NewFDB(n, 0)
		for i := range n {
			f.Learn(frame.VID(1+i%4), macN(i), PortID(i%64), 0, 0)
		}
		// Visit entries in a scattered order so that a large table cannot
		// hide in the cache by being walked in sequence.
		const stride = 7919
		b.Run(fmt.Sprintf("lookup/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := (i * stride) % n
				if _, ok := f.Lookup(frame.VID(1+k%4), macN(k), 1); !ok {
					b.Fatal("miss")
				}
			}
		})
		b.Run(fmt.Sprintf("learn/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				k := (i * stride) % n
				if res, _ := f.Learn(frame.VID(1+k%4), macN(k), PortID(k%64), 0, 1); res != Refreshed {
					b.Fatal(res)
				}
			}
		})
	}
}
