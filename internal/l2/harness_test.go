package l2

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/vlan"
)

// fakeClock is an injectable clock for ageing tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness drives a switch whose readers the test steps by hand, so that
// every frame sent has been decided and written when send returns.
type harness struct {
	t     testing.TB
	s     *Switch
	clock *fakeClock
	peers map[string]*mem.Port // the test's end of each port
	bufs  [][]byte
	sizes []int
}

func newHarness(t testing.TB, o Options) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), peers: make(map[string]*mem.Port)}
	if o.Now == nil {
		o.Now = h.clock.Now
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.manual = true
	h.s = s
	h.bufs = makeBufs(mem.DefaultQueueLen, 9300)
	h.sizes = make([]int, mem.DefaultQueueLen)
	t.Cleanup(func() { s.Close() })
	return h
}

func (h *harness) add(name string, cfg PortConfig) {
	h.t.Helper()
	h.addWith(name, cfg, mem.Config{})
}

// addWith adds a port whose in-memory link is made with mc (offloads, sizes).
func (h *harness) addWith(name string, cfg PortConfig, mc mem.Config) {
	h.t.Helper()
	sw, peer := mem.NewPair(mc)
	if err := h.s.AddPort(name, sw, cfg); err != nil {
		h.t.Fatalf("AddPort(%s): %v", name, err)
	}
	h.peers[name] = peer
}

// send writes frames into port and lets its reader forward them.
func (h *harness) send(port string, frames ...[]byte) {
	h.t.Helper()
	h.inject(port, frames, 0)
}

// inject writes frames (each starting off bytes in) into port and lets
// its reader forward them.
func (h *harness) inject(port string, frames [][]byte, off int) {
	h.t.Helper()
	offs := make([]int, len(frames))
	for i := range offs {
		offs[i] = off
	}
	if n, err := h.peers[port].Write(frames, offs); n != len(frames) || err != nil {
		h.t.Fatalf("inject into %s: %d of %d, %v", port, n, len(frames), err)
	}
	pe := h.s.byName[port]
	for pe.port.(*mem.Port).Queued() > 0 {
		if err := pe.r.step(); err != nil {
			h.t.Fatalf("step %s: %v", port, err)
		}
	}
}

// recv returns (copies of) the frames waiting at the test's end of port.
func (h *harness) recv(port string) [][]byte {
	h.t.Helper()
	var out [][]byte
	p := h.peers[port]
	for p.Queued() > 0 {
		n, err := p.Read(h.bufs, h.sizes, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			out = append(out, append([]byte(nil), h.bufs[i][:h.sizes[i]]...))
		}
	}
	return out
}

func (h *harness) counters(port string) Counters {
	h.t.Helper()
	c, err := h.s.Counters(port)
	if err != nil {
		h.t.Fatal(err)
	}
	return c
}

func mac(last byte) frame.MAC { return frame.MAC{0x02, 0x56, 0x53, 0, 0, last} }

// noTag, prioTag and tag say how a test frame is tagged.
const noTag = -1

// ethFrame builds a frame with a 46-byte payload that starts with id.
// vid is noTag for an untagged frame, else the tag's VID (0 = priority tag).
func ethFrame(dst, src frame.MAC, vid int, pcp uint8, id uint32) []byte {
	b := make([]byte, 0, 64)
	b = append(b, dst[:]...)
	b = append(b, src[:]...)
	if vid != noTag {
		b = binary.BigEndian.AppendUint16(b, frame.TPID8021Q)
		b = binary.BigEndian.AppendUint16(b, uint16(frame.MakeTCI(pcp, false, frame.VID(vid))))
	}
	b = binary.BigEndian.AppendUint16(b, 0x0800)
	b = binary.BigEndian.AppendUint32(b, id)
	return append(b, make([]byte, 42)...)
}

// mustVLAN is for fixed test tables: it panics on a constructor error.
func mustVLAN(p vlan.Port, err error) vlan.Port {
	if err != nil {
		panic(err)
	}
	return p
}
