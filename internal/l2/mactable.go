package l2

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
)

// A MACCursor is a position in the MAC table's order, by VLAN and then
// MAC: a page read from it starts with the first entry after it. The zero
// cursor is before every entry.
type MACCursor struct{ key uint64 } // an FDB key; 0: the start

// CursorAfter returns the cursor just past (vid, mac), whether or not the
// table holds that entry: the cursor of the next page after a page that
// ended with it.
func CursorAfter(vid frame.VID, mac frame.MAC) MACCursor { return MACCursor{fdbKey(vid, mac)} }

// Pos returns the (VLAN, MAC) the cursor is just past; ok is false for the
// start.
func (c MACCursor) Pos() (vid frame.VID, mac frame.MAC, ok bool) {
	if c.key == 0 {
		return 0, frame.MAC{}, false
	}
	vid, mac = keyParts(c.key)
	return vid, mac, true
}

// Page returns the first limit live entries after the cursor for which
// match is true (all of them if match is nil), sorted by VLAN and then
// MAC, and whether more such entries follow. It scans the table once and
// keeps only the limit+1 smallest keys it has seen, so its memory is
// O(limit) whatever the table's size; match is called only for entries
// that could make the page.
//
// It takes no lock, so learning goes on while it scans: an entry added,
// moved or removed during the scan may show in its old or new state or be
// missed, as with any read of a live table in pages.
func (f *FDB) Page(now int64, after MACCursor, limit int, match func(FDBEntry) bool) ([]FDBEntry, bool) {
	t, u := f.table.Load(), units(now)
	limit = max(min(limit, len(t.slots)), 0)
	h := pageHeap(make([]pageItem, 0, limit+1))
	for i := range t.slots {
		s := &t.slots[i]
		k := s.key.Load()
		if k&keyUsed == 0 || k <= after.key || len(h) == cap(h) && k >= h[0].key {
			continue
		}
		v := s.val.Load()
		if valCheck(v) != hashCheck(hashKey(k)) || !f.live(v, u) {
			continue // the slot was reused under us, or the entry aged
		}
		if match != nil && !match(entryOf(k, v, u)) {
			continue
		}
		h.add(pageItem{k, v})
	}
	more := len(h) > limit
	slices.SortFunc(h, func(a, b pageItem) int { return cmp.Compare(a.key, b.key) })
	// A key moved to another slot during the scan may have been seen twice.
	h = slices.CompactFunc(h, func(a, b pageItem) bool { return a.key == b.key })
	out := make([]FDBEntry, 0, min(len(h), limit))
	for _, it := range h[:min(len(h), limit)] {
		out = append(out, entryOf(it.key, it.val, u))
	}
	return out, more
}

// entryOf decodes a slot's words; u is now in time units.
func entryOf(k, v uint64, u int64) FDBEntry {
	vid, m := keyParts(k)
	e := FDBEntry{VID: vid, MAC: m, Port: valPort(v), Static: valStatic(v)}
	if !e.Static {
		e.Age = time.Duration((u - valSeen(v)) << timeShift)
	}
	return e
}

type pageItem struct{ key, val uint64 }

// pageHeap is a max-heap by key, bounded by its capacity: once full, a
// smaller key replaces the largest.
type pageHeap []pageItem

func (h *pageHeap) add(it pageItem) {
	s := *h
	if len(s) < cap(s) {
		s = append(s, it)
		for i := len(s) - 1; i > 0; { // sift up
			p := (i - 1) / 2
			if s[p].key >= s[i].key {
				break
			}
			s[p], s[i] = s[i], s[p]
			i = p
		}
		*h = s
		return
	}
	s[0] = it
	for i := 0; ; { // sift down
		big, l := i, 2*i+1
		if l < len(s) && s[l].key > s[big].key {
			big = l
		}
		if r := l + 1; r < len(s) && s[r].key > s[big].key {
			big = r
		}
		if big == i {
			return
		}
		s[i], s[big] = s[big], s[i]
		i = big
	}
}

// MACFilter selects rows of the MAC table; its zero value selects them all.
type MACFilter struct {
	// With ByVLAN, only the entries of VLAN; AnyVLAN selects the static
	// entries that hold on every VLAN of their port.
	VLAN   frame.VID
	ByVLAN bool
	MAC    frame.MAC // if not zero, only this address's entries
	Port   string    // if not "", only this port's entries
}

// MACEntry is a MAC table row with the port's name.
type MACEntry struct {
	FDBEntry
	PortName string
}

// MACPage returns the first limit live MAC table rows after the cursor
// that pass the filter, sorted by VLAN and MAC, and whether more follow
// (the next page starts at CursorAfter of the last row). Its memory is
// O(limit), whatever the table's size (FDB.Page). A filter on a port the
// switch does not have is ErrNotFound.
func (s *Switch) MACPage(after MACCursor, limit int, filter MACFilter) ([]MACEntry, bool, error) {
	snap := s.snap.Load()
	port := PortID(-1)
	if filter.Port != "" {
		i := slices.IndexFunc(snap.live, func(pe *portEntry) bool { return pe.name == filter.Port })
		if i < 0 {
			return nil, false, fmt.Errorf("MAC table of port %q: %w", filter.Port, ErrNotFound)
		}
		port = snap.live[i].id
	}
	entries, more := s.fdb.Page(s.now(), after, limit, func(e FDBEntry) bool {
		return snap.port(e.Port) != nil && // not a removed port's entry, not flushed yet
			(!filter.ByVLAN || e.VID == filter.VLAN) &&
			(filter.MAC.IsZero() || e.MAC == filter.MAC) &&
			(port < 0 || e.Port == port)
	})
	out := make([]MACEntry, len(entries))
	for i, e := range entries {
		out[i] = MACEntry{FDBEntry: e, PortName: snap.port(e.Port).name}
	}
	return out, more, nil
}
