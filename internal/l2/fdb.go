package l2

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
)

// PortID identifies a port inside one switch: a small integer, reused only
// after the port's reader has stopped and its FDB entries are gone.
type PortID int32

// MaxPorts is the number of ports one switch can hold.
const MaxPorts = 4096

// FDB defaults.
const (
	DefaultFDBSize = 65536
	DefaultAgeing  = 300 * time.Second
)

// AnyVLAN as the VLAN of a static entry makes it hold on every VLAN the port
// is a member of: an adapter's own MAC, whatever VLANs it carries.
const AnyVLAN frame.VID = 0

// LearnResult is what Learn did with a source address.
type LearnResult uint8

// Learn results.
const (
	Refreshed        LearnResult = iota // already known on this port (or a static entry of this port)
	Learned                             // new entry
	Moved                               // entry moved here from another port
	RefusedFull                         // table full: not learned
	RefusedPortLimit                    // the port's own limit reached: not learned
	RefusedStatic                       // a static entry of another port holds the address
)

// An FDBEntry is one row of the MAC table.
type FDBEntry struct {
	VID    frame.VID // AnyVLAN for a static entry that holds on every VLAN
	MAC    frame.MAC
	Port   PortID
	Static bool
	Age    time.Duration // since last seen; 0 for static entries
}

// FDB is the MAC table: (VLAN, MAC) → port. Learned entries are bounded in
// number, per table and optionally per port, and expire after the ageing
// time without traffic; static entries do neither and cannot be moved by
// learning. Times are nanoseconds on the caller's monotonic clock.
//
// It is an open-addressing hash table with linear probing whose slots pack
// the key into one word and port, static flag and last-seen time into
// another, so a lookup costs one cache line and no lock: readers load
// words atomically, writers (new, moved and removed entries) hold mu and
// store the value before the key. Refreshing a known entry is a CAS on its
// value, at most every ageing/64. A reader racing a slot's reuse is caught
// by check bits of the key kept in the value.
type FDB struct {
	size      int64
	ageing    int64 // in time units (see timeShift)
	refresh   int64 // in time units: how stale a timestamp may get before a refresh rewrites it
	table     atomic.Pointer[fdbTable]
	learned   atomic.Int64
	perPort   [MaxPorts]atomic.Int32 // learned entries per port
	mu        sync.Mutex             // serialises writers of table
	minSlots  int
	lastSweep int64 // time units of the last sweep made because the table was full (under mu)
}

type fdbTable struct {
	shift uint // 64 - log2(len(slots))
	mask  uint64
	slots []fdbSlot
	used  int // live keys (writers only, under FDB.mu)
	tombs int // deleted keys still blocking probes
}

type fdbSlot struct {
	key atomic.Uint64 // 0 empty, tombstone, or keyUsed|VID<<48|MAC
	val atomic.Uint64 // seen<<24 | static<<23 | check<<12 | port
}

const (
	keyUsed   = 1 << 63
	tombstone = 1 << 62
	timeShift = 20 // time unit: 2^20 ns ≈ 1.05 ms
	seenMask  = 1<<40 - 1
)

func packVal(port PortID, static bool, check uint64, seen int64) uint64 {
	v := uint64(seen)&seenMask<<24 | check<<12 | uint64(port)&0xfff
	if static {
		v |= 1 << 23
	}
	return v
}

func valPort(v uint64) PortID  { return PortID(v & 0xfff) }
func valStatic(v uint64) bool  { return v&(1<<23) != 0 }
func valCheck(v uint64) uint64 { return v >> 12 & 0x7ff }
func valSeen(v uint64) int64   { return int64(v >> 24) }
func withSeen(v uint64, seen int64) uint64 {
	return v&(1<<24-1) | uint64(seen)&seenMask<<24
}

// NewFDB returns an empty table for size learned entries (DefaultFDBSize if
// size <= 0) that age after ageing (DefaultAgeing if ageing <= 0).
func NewFDB(size int, ageing time.Duration) *FDB {
	if size <= 0 {
		size = DefaultFDBSize
	}
	if ageing <= 0 {
		ageing = DefaultAgeing
	}
	units := max(int64(ageing)>>timeShift, 1)
	f := &FDB{size: int64(size), ageing: units, refresh: max(units/64, 1)}
	f.minSlots = tableSlots(size)
	f.table.Store(newTable(f.minSlots))
	return f
}

// tableSlots is the power of two that keeps n entries at most half full.
func tableSlots(n int) int {
	s := 64
	for s < 2*n {
		s *= 2
	}
	return s
}

func newTable(slots int) *fdbTable {
	bitsN := uint(0)
	for 1<<bitsN < slots {
		bitsN++
	}
	return &fdbTable{shift: 64 - bitsN, mask: uint64(slots - 1), slots: make([]fdbSlot, slots)}
}

// Size returns the bound on learned entries.
func (f *FDB) Size() int { return int(f.size) }

// Ageing returns the ageing time.
func (f *FDB) Ageing() time.Duration { return time.Duration(f.ageing << timeShift) }

func fdbKey(v frame.VID, m frame.MAC) uint64 {
	return keyUsed | uint64(v&0xfff)<<48 | uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 |
		uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

func keyParts(k uint64) (frame.VID, frame.MAC) {
	return frame.VID(k >> 48 & 0xfff), frame.MAC{byte(k >> 40), byte(k >> 32), byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
}

func hashKey(k uint64) uint64   { return k * 0x9e3779b97f4a7c15 } // Fibonacci hashing
func hashCheck(h uint64) uint64 { return h >> 8 & 0x7ff }

// find returns the slot holding k and its value, or nil.
func (t *fdbTable) find(k uint64) (*fdbSlot, uint64) {
	h := hashKey(k)
	for i := h >> t.shift; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		switch s.key.Load() {
		case 0:
			return nil, 0
		case k:
			v := s.val.Load()
			if valCheck(v) != hashCheck(h) {
				return nil, 0 // the slot was reused under us
			}
			return s, v
		}
	}
}

func (f *FDB) live(v uint64, now int64) bool {
	return valStatic(v) || now-valSeen(v) < f.ageing
}

func units(now int64) int64 { return now >> timeShift & seenMask }

// Lookup returns the port of (vid, mac): a live learned or static entry
// for that VLAN, else a static AnyVLAN entry for mac (the caller checks
// that the port is a member of vid).
func (f *FDB) Lookup(vid frame.VID, mac frame.MAC, now int64) (PortID, bool) {
	t, u := f.table.Load(), units(now)
	if s, v := t.find(fdbKey(vid, mac)); s != nil && f.live(v, u) {
		return valPort(v), true
	}
	if s, v := t.find(fdbKey(AnyVLAN, mac)); s != nil && valStatic(v) {
		return valPort(v), true
	}
	return 0, false
}

// Learn records that mac was seen as a source on port in VLAN vid. limit is
// the port's own bound on learned entries (0: none). For Moved and
// RefusedStatic it also returns the other port.
func (f *FDB) Learn(vid frame.VID, mac frame.MAC, port PortID, limit int, now int64) (LearnResult, PortID) {
	t, u := f.table.Load(), units(now)
	k := fdbKey(vid, mac)
	if s, v := t.find(k); s != nil && f.live(v, u) {
		if valPort(v) == port {
			if !valStatic(v) && u-valSeen(v) >= f.refresh {
				s.val.CompareAndSwap(v, withSeen(v, u))
			}
			return Refreshed, port
		}
		if valStatic(v) {
			return RefusedStatic, valPort(v)
		}
	}
	if s, v := t.find(fdbKey(AnyVLAN, mac)); s != nil && valStatic(v) {
		if valPort(v) == port {
			return Refreshed, port
		}
		return RefusedStatic, valPort(v)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.learnLocked(k, port, limit, u)
}

// learnLocked adds, revives or moves an entry; the caller holds f.mu.
func (f *FDB) learnLocked(k uint64, port PortID, limit int, u int64) (LearnResult, PortID) {
	t := f.table.Load()
	s, v := t.find(k)
	if s == nil {
		if f.learned.Load() >= f.size && u-f.lastSweep >= f.refresh {
			// Full: reclaim aged entries now rather than at the next
			// background sweep, but scan at most once per refresh interval
			// so that a storm of new sources cannot make every frame scan.
			f.lastSweep = u
			f.flushLocked(func(_, v uint64) bool { return !f.live(v, u) })
		}
		if f.learned.Add(1) > f.size {
			f.learned.Add(-1)
			return RefusedFull, 0
		}
		if !f.takePortSlot(port, limit) {
			f.learned.Add(-1)
			return RefusedPortLimit, 0
		}
		f.insertLocked(k, packVal(port, false, hashCheck(hashKey(k)), u))
		return Learned, port
	}
	old := valPort(v)
	if valStatic(v) {
		return RefusedStatic, old
	}
	alive := f.live(v, u)
	if old == port {
		s.val.Store(withSeen(v, u))
		if alive {
			return Refreshed, port
		}
		return Learned, port
	}
	if !f.takePortSlot(port, limit) {
		return RefusedPortLimit, 0
	}
	f.perPort[old].Add(-1)
	s.val.Store(packVal(port, false, valCheck(v), u))
	if !alive {
		return Learned, port // the old entry had aged out: not a move
	}
	return Moved, old
}

// takePortSlot counts one more learned entry for port unless that breaks
// its limit.
func (f *FDB) takePortSlot(port PortID, limit int) bool {
	if f.perPort[port].Add(1) > int32(limit) && limit > 0 {
		f.perPort[port].Add(-1)
		return false
	}
	return true
}

// insertLocked puts a key known to be absent into the table, growing or
// cleaning it first when probes would get long; the caller holds f.mu.
func (f *FDB) insertLocked(k, v uint64) {
	t := f.table.Load()
	if 4*(t.used+t.tombs+1) > 3*len(t.slots) {
		t = f.rebuildLocked(t)
	}
	for i := hashKey(k) >> t.shift; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if sk := s.key.Load(); sk == 0 || sk == tombstone {
			if sk == tombstone {
				t.tombs--
			}
			s.val.Store(v)
			s.key.Store(k)
			t.used++
			return
		}
	}
}

// rebuildLocked copies the live keys into a fresh table (twice as large
// when more than half full) and publishes it. Readers of the old table
// finish there undisturbed.
func (f *FDB) rebuildLocked(old *fdbTable) *fdbTable {
	n := max(tableSlots(old.used+1), f.minSlots)
	t := newTable(n)
	for i := range old.slots {
		s := &old.slots[i]
		if k := s.key.Load(); k&keyUsed != 0 {
			for j := hashKey(k) >> t.shift; ; j = (j + 1) & t.mask {
				if d := &t.slots[j]; d.key.Load() == 0 {
					d.val.Store(s.val.Load())
					d.key.Store(k)
					break
				}
			}
			t.used++
		}
	}
	f.table.Store(t)
	return t
}

// removeLocked deletes the entry in slot s; the caller holds f.mu.
func (f *FDB) removeLocked(t *fdbTable, s *fdbSlot) {
	if v := s.val.Load(); !valStatic(v) {
		f.learned.Add(-1)
		f.perPort[valPort(v)].Add(-1)
	}
	s.key.Store(tombstone)
	t.used--
	t.tombs++
}

// AddStatic makes (vid, mac) → port a static entry (vid may be AnyVLAN).
// It replaces any entry for the same key, and for AnyVLAN also removes
// learned entries of mac on other ports, so that traffic to the address
// goes to its owner at once.
func (f *FDB) AddStatic(vid frame.VID, mac frame.MAC, port PortID) {
	if vid == AnyVLAN {
		f.flush(func(k, v uint64) bool {
			_, m := keyParts(k)
			return m == mac && !valStatic(v) && valPort(v) != port
		})
	}
	k := fdbKey(vid, mac)
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.table.Load()
	if s, _ := t.find(k); s != nil {
		f.removeLocked(t, s)
	}
	f.insertLocked(k, packVal(port, true, hashCheck(hashKey(k)), 0))
}

// RemoveStatic deletes the static entry (vid, mac) and reports whether there was one.
func (f *FDB) RemoveStatic(vid frame.VID, mac frame.MAC) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.table.Load()
	if s, v := t.find(fdbKey(vid, mac)); s != nil && valStatic(v) {
		f.removeLocked(t, s)
		return true
	}
	return false
}

// Expire removes the learned entries not seen for the ageing time and
// returns how many it removed.
func (f *FDB) Expire(now int64) int {
	u := units(now)
	return f.flush(func(_, v uint64) bool { return !f.live(v, u) })
}

// FlushAll removes every learned entry; static entries stay.
func (f *FDB) FlushAll() int {
	return f.flush(func(_, v uint64) bool { return !valStatic(v) })
}

// FlushPort removes the learned entries of port, and its static ones too
// when withStatic (as when the port goes away).
func (f *FDB) FlushPort(port PortID, withStatic bool) int {
	if !withStatic && f.perPort[port].Load() == 0 {
		return 0 // nothing learned: no need to scan the table
	}
	return f.flush(func(_, v uint64) bool {
		return valPort(v) == port && (withStatic || !valStatic(v))
	})
}

// FlushVLAN removes the learned entries of one VLAN.
func (f *FDB) FlushVLAN(vid frame.VID) int {
	return f.flush(func(k, v uint64) bool {
		kv, _ := keyParts(k)
		return kv == vid && !valStatic(v)
	})
}

// flush removes the entries for which match(key, value) is true.
func (f *FDB) flush(match func(k, v uint64) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.flushLocked(match)
}

func (f *FDB) flushLocked(match func(k, v uint64) bool) int {
	t := f.table.Load()
	n := 0
	for i := range t.slots {
		s := &t.slots[i]
		if k := s.key.Load(); k&keyUsed != 0 && match(k, s.val.Load()) {
			f.removeLocked(t, s)
			n++
		}
	}
	return n
}

// Learned returns the number of learned entries, aged ones not yet expired included.
func (f *FDB) Learned() int { return int(f.learned.Load()) }

// PortLearned returns the number of learned entries of one port.
func (f *FDB) PortLearned(port PortID) int { return int(f.perPort[port].Load()) }
