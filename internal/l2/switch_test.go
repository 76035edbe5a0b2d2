package l2

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

func ids(frames [][]byte) []uint32 {
	var out []uint32
	for _, f := range frames {
		e := frame.Ethernet(f)
		p := f[e.PayloadOffset():]
		out = append(out, uint32(p[0])<<24|uint32(p[1])<<16|uint32(p[2])<<8|uint32(p[3]))
	}
	return out
}

func expectIDs(t *testing.T, h *harness, port string, want ...uint32) {
	t.Helper()
	got := ids(h.recv(port))
	if len(got) != len(want) {
		t.Fatalf("port %s got frames %v, want %v", port, got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("port %s got frames %v, want %v", port, got, want)
		}
	}
}

func TestLearningAndFlooding(t *testing.T) {
	h := newHarness(t, Options{})
	for _, p := range []string{"a", "b", "c"} {
		h.add(p, PortConfig{})
	}
	A, B, X := mac(0xa), mac(0xb), mac(0x77)
	h.send("a", ethFrame(B, A, noTag, 0, 1)) // B unknown: flood
	expectIDs(t, h, "b", 1)
	expectIDs(t, h, "c", 1)
	expectIDs(t, h, "a")
	h.send("b", ethFrame(A, B, noTag, 0, 2)) // A learned: only a
	expectIDs(t, h, "a", 2)
	expectIDs(t, h, "c")
	h.send("a", ethFrame(B, A, noTag, 0, 3)) // B learned now
	expectIDs(t, h, "b", 3)
	expectIDs(t, h, "c")
	h.send("c", ethFrame(frame.Broadcast, mac(0xc), noTag, 0, 4))
	expectIDs(t, h, "a", 4)
	expectIDs(t, h, "b", 4)
	expectIDs(t, h, "c")
	h.send("a", ethFrame(frame.MAC{0x01, 0x00, 0x5e, 0, 0, 1}, A, noTag, 0, 5)) // multicast floods
	expectIDs(t, h, "b", 5)
	expectIDs(t, h, "c", 5)

	// A second station behind a: traffic between two stations on one port
	// is not sent back out of it.
	h.send("a", ethFrame(frame.Broadcast, X, noTag, 0, 6))
	h.recv("b")
	h.recv("c")
	h.send("a", ethFrame(X, A, noTag, 0, 7))
	expectIDs(t, h, "a")
	expectIDs(t, h, "b")
	if c := h.counters("a"); c.Drops[DropFiltered] != 1 {
		t.Fatalf("filtered drops on a = %d, want 1", c.Drops[DropFiltered])
	}

	ca := h.counters("a")
	if ca.RxPackets != 5 || ca.RxBytes != 5*60 || ca.TxPackets != 2 || ca.TxBytes != 2*60 || ca.Floods != 3 {
		t.Fatalf("counters of a: %+v", ca)
	}
	macs := macTable(t, h.s)
	if len(macs) != 4 {
		t.Fatalf("MAC table has %d entries, want 4: %+v", len(macs), macs)
	}
	for _, e := range macs {
		want := map[frame.MAC]string{A: "a", B: "b", X: "a", mac(0xc): "c"}[e.MAC]
		if e.PortName != want || e.VID != 1 || e.Static {
			t.Errorf("entry %v on %s VLAN %d, want %s VLAN 1", e.MAC, e.PortName, e.VID, want)
		}
	}
}

func TestIngressChecks(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("a", PortConfig{})
	h.add("b", PortConfig{})
	good := ethFrame(frame.Broadcast, mac(1), noTag, 0, 1)
	cases := []struct {
		name   string
		frame  []byte
		reason DropReason
	}{
		{"runt", good[:13], DropRunt},
		{"cut tag", ethFrame(frame.Broadcast, mac(1), 1, 0, 1)[:17], DropRunt},
		{"multicast source", ethFrame(frame.Broadcast, frame.MAC{0x01, 0, 0, 0, 0, 1}, noTag, 0, 1), DropInvalidSource},
		{"broadcast source", ethFrame(frame.Broadcast, frame.Broadcast, noTag, 0, 1), DropInvalidSource},
		{"zero source", ethFrame(frame.Broadcast, frame.MAC{}, noTag, 0, 1), DropInvalidSource},
		{"STP", ethFrame(frame.MustParseMAC("01:80:c2:00:00:00"), mac(1), noTag, 0, 1), DropReservedAddress},
		{"LLDP", ethFrame(frame.MustParseMAC("01:80:c2:00:00:0e"), mac(1), noTag, 0, 1), DropReservedAddress},
	}
	for _, c := range cases {
		before := h.counters("a").Drops[c.reason]
		h.send("a", c.frame)
		if got := h.recv("b"); len(got) != 0 {
			t.Errorf("%s: forwarded", c.name)
		}
		if after := h.counters("a").Drops[c.reason]; after != before+1 {
			t.Errorf("%s: %s drops went %d → %d", c.name, c.reason, before, after)
		}
	}
	if n := len(macTable(t, h.s)); n != 0 {
		t.Errorf("invalid frames taught the table %d entries", n)
	}
	h.send("a", good)
	expectIDs(t, h, "b", 1)
}

func TestSpoofGuardAndStaticMAC(t *testing.T) {
	h := newHarness(t, Options{})
	vm := mac(0x10)
	h.add("vm", PortConfig{MAC: vm, SpoofGuard: true})
	h.add("uplink", PortConfig{})
	h.add("other", PortConfig{})

	h.send("vm", ethFrame(frame.Broadcast, mac(0x66), noTag, 0, 1))
	expectIDs(t, h, "uplink")
	if c := h.counters("vm"); c.Drops[DropSpoofedSource] != 1 {
		t.Fatalf("spoofed drops = %d", c.Drops[DropSpoofedSource])
	}
	// The adapter's MAC is known before it sends anything.
	h.send("uplink", ethFrame(vm, mac(0x20), noTag, 0, 2))
	expectIDs(t, h, "vm", 2)
	expectIDs(t, h, "other")
	// Another port sending from the adapter's MAC cannot take it over.
	h.send("other", ethFrame(frame.Broadcast, vm, noTag, 0, 3))
	h.recv("vm")
	h.recv("uplink")
	if c := h.counters("other"); c.LearnRefused != 1 {
		t.Fatalf("learn refusals on other = %d, want 1", c.LearnRefused)
	}
	h.send("uplink", ethFrame(vm, mac(0x20), noTag, 0, 4))
	expectIDs(t, h, "vm", 4)
	expectIDs(t, h, "other")
	h.send("vm", ethFrame(mac(0x20), vm, noTag, 0, 5))
	expectIDs(t, h, "uplink", 5)

	for _, bad := range []PortConfig{{SpoofGuard: true}, {MAC: frame.Broadcast}, {MACLimit: -1}} {
		sw, _ := mem.NewPair(mem.Config{})
		if err := h.s.AddPort("bad", sw, bad); !errors.Is(err, field.ErrInvalid) {
			t.Errorf("AddPort(%+v) = %v, want field.ErrInvalid", bad, err)
		}
	}
}

func TestStationMove(t *testing.T) {
	var mu sync.Mutex
	var moves []Move
	h := newHarness(t, Options{Name: "sw0", MoveReports: 3, OnMove: func(m Move) {
		mu.Lock()
		moves = append(moves, m)
		mu.Unlock()
	}})
	h.add("a", PortConfig{})
	h.add("b", PortConfig{})
	h.add("c", PortConfig{})
	S := mac(5)
	h.send("a", ethFrame(frame.Broadcast, S, noTag, 0, 1))
	h.send("b", ethFrame(frame.Broadcast, S, noTag, 0, 2))
	h.recv("a")
	h.recv("b")
	h.recv("c")
	h.send("c", ethFrame(S, mac(6), noTag, 0, 3))
	expectIDs(t, h, "b", 3)
	expectIDs(t, h, "a")
	if len(moves) != 1 || moves[0] != (Move{Switch: "sw0", MAC: S, VID: 1, From: "a", To: "b"}) {
		t.Fatalf("moves = %+v", moves)
	}
	if c := h.counters("b"); c.Moves != 1 {
		t.Fatalf("moves on b = %d", c.Moves)
	}
	// A flapping station: at most 3 reports a second, the rest counted.
	for i := range 10 {
		h.send([]string{"a", "b"}[i%2], ethFrame(frame.Broadcast, S, noTag, 0, 10))
	}
	if len(moves) != 3 || h.s.SuppressedMoves() != 8 {
		t.Fatalf("%d reports, %d suppressed; want 3 and 8", len(moves), h.s.SuppressedMoves())
	}
	h.clock.Advance(time.Second)
	h.send("a", ethFrame(frame.Broadcast, S, noTag, 0, 11))
	if len(moves) != 4 {
		t.Fatalf("no report after the rate-limit second passed (%d)", len(moves))
	}
}

func TestTableBoundsAndAgeing(t *testing.T) {
	h := newHarness(t, Options{FDBSize: 2, Ageing: time.Minute})
	h.add("a", PortConfig{})
	h.add("b", PortConfig{MACLimit: 1})
	h.add("c", PortConfig{})
	h.send("a", ethFrame(frame.Broadcast, mac(1), noTag, 0, 1))
	h.send("b", ethFrame(frame.Broadcast, mac(2), noTag, 0, 2))
	h.send("b", ethFrame(frame.Broadcast, mac(3), noTag, 0, 3)) // b's own limit
	h.send("c", ethFrame(frame.Broadcast, mac(4), noTag, 0, 4)) // table full
	for _, p := range []string{"a", "b", "c"} {
		h.recv(p)
	}
	if h.counters("b").LearnRefused != 1 || h.counters("c").LearnRefused != 1 {
		t.Fatalf("refusals: b %d, c %d", h.counters("b").LearnRefused, h.counters("c").LearnRefused)
	}
	// Replies to an address that was not learned flood.
	h.send("a", ethFrame(mac(4), mac(1), noTag, 0, 5))
	expectIDs(t, h, "b", 5)
	expectIDs(t, h, "c", 5)

	// After the ageing time without traffic, entries are gone and their
	// traffic floods again; a learn into the full table reclaims the aged
	// entries at once instead of waiting for the background sweep.
	h.clock.Advance(61 * time.Second)
	h.send("c", ethFrame(mac(1), mac(4), noTag, 0, 6))
	expectIDs(t, h, "a", 6)
	expectIDs(t, h, "b", 6)
	if tbl := macTable(t, h.s); len(tbl) != 1 || tbl[0].MAC != mac(4) || tbl[0].PortName != "c" {
		t.Fatalf("table after ageing = %+v, want only mac(4) on c", tbl)
	}
}

func TestSetPortChangesVLANLive(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("in", PortConfig{VLAN: mustVLAN(vlan.Access(10))})
	h.add("v10", PortConfig{VLAN: mustVLAN(vlan.Access(10))})
	h.add("v20", PortConfig{VLAN: mustVLAN(vlan.Access(20))})
	h.send("in", ethFrame(frame.Broadcast, mac(1), noTag, 0, 1))
	expectIDs(t, h, "v10", 1)
	expectIDs(t, h, "v20")
	if err := h.s.SetPort("in", PortConfig{VLAN: mustVLAN(vlan.Access(20))}); err != nil {
		t.Fatal(err)
	}
	if n := len(macTable(t, h.s)); n != 0 {
		t.Fatalf("%d MAC entries of the port survived its VLAN change", n)
	}
	h.send("in", ethFrame(frame.Broadcast, mac(1), noTag, 0, 2))
	expectIDs(t, h, "v10")
	expectIDs(t, h, "v20", 2)
	if c := h.counters("in"); c.RxPackets != 2 {
		t.Fatalf("counters lost across the change: %+v", c)
	}
	if err := h.s.SetPort("nope", PortConfig{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetPort of a missing port: %v", err)
	}
}

func TestRemovePortFlushes(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("a", PortConfig{MAC: mac(0xa)})
	h.add("b", PortConfig{})
	h.send("a", ethFrame(frame.Broadcast, mac(0x1a), noTag, 0, 1))
	h.send("b", ethFrame(frame.Broadcast, mac(0xb), noTag, 0, 2))
	if n := len(macTable(t, h.s)); n != 3 {
		t.Fatalf("table has %d entries, want 3", n)
	}
	if err := h.s.RemovePort("a"); err != nil {
		t.Fatal(err)
	}
	if tbl := macTable(t, h.s); len(tbl) != 1 || tbl[0].PortName != "b" {
		t.Fatalf("after removal the table is %+v", tbl)
	}
	if err := h.s.RemovePort("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second removal: %v", err)
	}
	// The freed ID is reused by a new port, which must not inherit anything.
	h.add("c", PortConfig{})
	h.send("b", ethFrame(mac(0x1a), mac(0xb), noTag, 0, 3))
	expectIDs(t, h, "c", 3)
	if c := h.counters("c"); c.RxPackets != 0 || c.TxPackets != 1 {
		t.Fatalf("new port counters %+v", c)
	}
	sw, _ := mem.NewPair(mem.Config{})
	if err := h.s.AddPort("b", sw, PortConfig{}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}
}

func TestQueueFullCounted(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("a", PortConfig{})
	sw, peer := mem.NewPair(mem.Config{QueueLen: 4})
	if err := h.s.AddPort("slow", sw, PortConfig{}); err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for i := range 10 {
		frames = append(frames, ethFrame(frame.Broadcast, mac(1), noTag, 0, uint32(i)))
	}
	h.send("a", frames...)
	if c := h.counters("slow"); c.TxPackets != 4 || c.Drops[DropQueueFull] != 6 {
		t.Fatalf("slow port: tx %d, queue-full drops %d; want 4 and 6", c.TxPackets, c.Drops[DropQueueFull])
	}
	if peer.Queued() != 4 {
		t.Fatalf("peer has %d frames", peer.Queued())
	}
}

// l2Goroutines counts goroutines running code of this package, other than
// the test itself.
func l2Goroutines() int {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	count := 0
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "vswitch/internal/l2.(*") && !strings.Contains(g, "testing.tRunner") {
			count++
		}
	}
	return count
}

func waitNoL2Goroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l2Goroutines() > 0 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines leaked:\n%s", buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLiveTraffic runs the real reader goroutines: traffic flows while ports
// come and go and change VLAN, and Close leaves no goroutine behind.
func TestLiveTraffic(t *testing.T) {
	waitNoL2Goroutines(t)
	s, err := New(Options{Name: "live"})
	if err != nil {
		t.Fatal(err)
	}
	peers := map[string]*mem.Port{}
	for _, name := range []string{"a", "b"} {
		sw, peer := mem.NewPair(mem.Config{})
		if err := s.AddPort(name, sw, PortConfig{VLAN: mustVLAN(vlan.Access(10))}); err != nil {
			t.Fatal(err)
		}
		peers[name] = peer
	}
	var received atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() { // receiver at b
		defer wg.Done()
		bufs := makeBufs(64, 2048)
		sizes := make([]int, 64)
		for {
			n, err := peers["b"].Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			received.Add(int64(n))
		}
	}()
	go func() { // sender at a
		defer wg.Done()
		f := [][]byte{ethFrame(frame.Broadcast, mac(1), noTag, 0, 1)}
		for {
			select {
			case <-stop:
				return
			default:
			}
			peers["a"].Write(f, []int{0})
			time.Sleep(50 * time.Microsecond)
		}
	}()
	waitFor(t, "traffic a→b", func() bool { return received.Load() > 10 })

	// Move b out of VLAN 10 and back, add and remove a third port, all under traffic.
	if err := s.SetPort("b", PortConfig{VLAN: mustVLAN(vlan.Access(20))}); err != nil {
		t.Fatal(err)
	}
	sw, _ := mem.NewPair(mem.Config{})
	if err := s.AddPort("c", sw, PortConfig{VLAN: mustVLAN(vlan.Access(10))}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	at := received.Load()
	time.Sleep(50 * time.Millisecond)
	if received.Load() > at+1 { // one batch may have been decided just before the change
		t.Fatalf("b still receives VLAN 10 traffic after moving to VLAN 20 (%d → %d)", at, received.Load())
	}
	if err := s.RemovePort("c"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPort("b", PortConfig{VLAN: mustVLAN(vlan.Access(10))}); err != nil {
		t.Fatal(err)
	}
	at = received.Load()
	waitFor(t, "traffic a→b again", func() bool { return received.Load() > at+10 })

	close(stop)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	peers["b"].Close()
	wg.Wait()
	if err := s.AddPort("late", sw, PortConfig{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddPort after Close: %v", err)
	}
	waitNoL2Goroutines(t)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A frame longer than an egress port takes (its Write says
// frame.ErrTooBig) is counted too-big on that port, and the frames behind
// it in the same batch are still written.
func TestTooBigCountedAndTheRestWritten(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("a", PortConfig{})
	sw, peer := mem.NewPair(mem.Config{MaxFrame: 1000})
	if err := h.s.AddPort("small", sw, PortConfig{}); err != nil {
		t.Fatal(err)
	}
	big := append(ethFrame(frame.Broadcast, mac(1), noTag, 0, 2), make([]byte, 1500)...)
	h.send("a", ethFrame(frame.Broadcast, mac(1), noTag, 0, 1), big, ethFrame(frame.Broadcast, mac(1), noTag, 0, 3))
	if c := h.counters("small"); c.TxPackets != 2 || c.Drops[DropTooBig] != 1 || c.Drops[DropPortError] != 0 {
		t.Fatalf("small port: tx %d, too-big %d, port-error %d; want 2, 1, 0", c.TxPackets, c.Drops[DropTooBig], c.Drops[DropPortError])
	}
	if peer.Queued() != 2 {
		t.Fatalf("peer has %d frames, want the two that fit", peer.Queued())
	}
}
