package l2

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/frame"
)

// allEntries walks f page by page, as a client of the API does.
func allEntries(t testing.TB, f *FDB, now int64, limit int, match func(FDBEntry) bool) []FDBEntry {
	t.Helper()
	var out []FDBEntry
	var after MACCursor
	for pages := 0; ; pages++ {
		page, more := f.Page(now, after, limit, match)
		if len(page) > limit || more && len(page) != limit {
			t.Fatalf("page %d after %v: %d entries (limit %d), more %v", pages, after, len(page), limit, more)
		}
		out = append(out, page...)
		if !more {
			return out
		}
		last := page[len(page)-1]
		after = CursorAfter(last.VID, last.MAC)
	}
}

// macTable is the whole table of s, read in small pages.
func macTable(t testing.TB, s *Switch) []MACEntry {
	t.Helper()
	var out []MACEntry
	var after MACCursor
	for {
		page, more, err := s.MACPage(after, 2, MACFilter{})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page...)
		if !more {
			return out
		}
		last := page[len(page)-1]
		after = CursorAfter(last.VID, last.MAC)
	}
}

func byVLANAndMAC(a, b FDBEntry) int {
	return cmp.Or(cmp.Compare(a.VID, b.VID), slices.Compare(a.MAC[:], b.MAC[:]))
}

// pageTable is a table of 3,000 entries on VLANs 1 to 3 and ports 0 to 4,
// a third of them aged at readAt, and static entries (some on every VLAN);
// want is its live content in (VLAN, MAC) order.
func pageTable(t *testing.T) (f *FDB, readAt int64, want []FDBEntry) {
	f = NewFDB(10_000, 300*time.Second)
	readAt = 350 * sec
	for i := range 3000 {
		vid, m, port := frame.VID(1+i%3), macN(i*7919%100_000), PortID(i%5)
		seen := 200 * sec
		if i%3 == 1 {
			seen = 0 // aged at readAt
		}
		if res, _ := f.Learn(vid, m, port, 0, seen); res != Learned {
			t.Fatalf("learn %d: %v", i, res)
		}
		if seen != 0 {
			want = append(want, FDBEntry{VID: vid, MAC: m, Port: port})
		}
	}
	for i := range 20 {
		vid := frame.VID(i % 2 * 2) // AnyVLAN or VLAN 2
		m := frame.MAC{0x02, 0xff, 0, 0, 0, byte(i)}
		f.AddStatic(vid, m, PortID(i%5))
		want = append(want, FDBEntry{VID: vid, MAC: m, Port: PortID(i % 5), Static: true})
	}
	slices.SortFunc(want, byVLANAndMAC)
	return f, readAt, want
}

func TestFDBPageWalksEveryLiveEntryOnce(t *testing.T) {
	f, readAt, want := pageTable(t)
	for _, limit := range []int{1, 7, 1000, 2020, 10_000} {
		got := allEntries(t, f, readAt, limit, nil)
		if len(got) != len(want) {
			t.Fatalf("limit %d: %d entries, want %d", limit, len(got), len(want))
		}
		for i := range got {
			if got[i].VID != want[i].VID || got[i].MAC != want[i].MAC || got[i].Port != want[i].Port || got[i].Static != want[i].Static {
				t.Fatalf("limit %d: entry %d is %+v, want %+v", limit, i, got[i], want[i])
			}
			// 150 s since last seen, to the FDB's time unit of about 1 ms.
			if d := got[i].Age - 150*time.Second; !got[i].Static && (d < -2*time.Millisecond || d > 2*time.Millisecond) {
				t.Fatalf("limit %d: entry %d age %v, want 150s", limit, i, got[i].Age)
			}
		}
	}
}

func TestFDBPage(t *testing.T) {
	f, readAt, all := pageTable(t)
	mid := all[len(all)/2]
	if prev := all[len(all)/2-1]; fdbKey(prev.VID, prev.MAC) == fdbKey(mid.VID, mid.MAC)-1 {
		t.Fatal("the test needs a gap in front of the middle entry")
	}
	filter := func(keep func(FDBEntry) bool) []FDBEntry {
		var out []FDBEntry
		for _, e := range all {
			if keep(e) {
				out = append(out, e)
			}
		}
		return out
	}
	onVLAN2 := func(e FDBEntry) bool { return e.VID == 2 }
	onPort3 := func(e FDBEntry) bool { return e.Port == 3 }
	static := func(e FDBEntry) bool { return e.Static }
	tests := []struct {
		name     string
		after    MACCursor
		limit    int
		match    func(FDBEntry) bool
		want     []FDBEntry
		wantMore bool
	}{
		{"first page", MACCursor{}, 10, nil, all[:10], true},
		{"whole table in one page", MACCursor{}, len(all), nil, all, false},
		{"limit over the table", MACCursor{}, 1 << 40, nil, all, false},
		{"from the middle", CursorAfter(mid.VID, mid.MAC), 5, nil, all[len(all)/2+1 : len(all)/2+6], true},
		{"cursor between entries", MACCursor{fdbKey(mid.VID, mid.MAC) - 1}, 1, nil, []FDBEntry{mid}, true},
		{"last page", CursorAfter(all[len(all)-4].VID, all[len(all)-4].MAC), 10, nil, all[len(all)-3:], false},
		{"exactly the rest", CursorAfter(all[len(all)-4].VID, all[len(all)-4].MAC), 3, nil, all[len(all)-3:], false},
		{"past the end", CursorAfter(frame.MaxVID, frame.Broadcast), 10, nil, nil, false},
		{"limit 0 says whether any", MACCursor{}, 0, nil, nil, true},
		{"VLAN 2", MACCursor{}, 10_000, onVLAN2, filter(onVLAN2), false},
		{"VLAN 2, paged", MACCursor{}, 3, onVLAN2, filter(onVLAN2)[:3], true},
		{"port 3", MACCursor{}, 10_000, onPort3, filter(onPort3), false},
		{"statics", MACCursor{}, 10_000, static, filter(static), false},
		{"one MAC", MACCursor{}, 10, func(e FDBEntry) bool { return e.MAC == mid.MAC }, []FDBEntry{mid}, false},
		{"no match", MACCursor{}, 10, func(FDBEntry) bool { return false }, nil, false},
	}
	for _, tt := range tests {
		got, more := f.Page(readAt, tt.after, tt.limit, tt.match)
		if more != tt.wantMore || len(got) != len(tt.want) {
			t.Errorf("%s: %d entries, more %v; want %d, %v", tt.name, len(got), more, len(tt.want), tt.wantMore)
			continue
		}
		for i := range got {
			if byVLANAndMAC(got[i], tt.want[i]) != 0 || got[i].Port != tt.want[i].Port {
				t.Errorf("%s: entry %d is %+v, want %+v", tt.name, i, got[i], tt.want[i])
				break
			}
		}
	}
}

func TestFDBPageExcludesAgedEntries(t *testing.T) {
	f := NewFDB(0, 300*time.Second)
	f.Learn(1, mac(1), 1, 0, 0)
	f.Learn(1, mac(2), 1, 0, 100*sec)
	f.AddStatic(1, mac(3), 2)
	if got, more := f.Page(350*sec, MACCursor{}, 10, nil); more || len(got) != 2 || got[0].MAC != mac(2) || got[1].MAC != mac(3) {
		t.Fatalf("page at 350 s = %+v, more %v; want mac(2) and the static mac(3)", got, more)
	}
	if got, _ := f.Page(450*sec, MACCursor{}, 10, nil); len(got) != 1 || !got[0].Static {
		t.Fatalf("page at 450 s = %+v, want only the static entry", got)
	}
}

func TestMACCursorPos(t *testing.T) {
	if _, _, ok := (MACCursor{}).Pos(); ok {
		t.Fatal("the zero cursor has a position")
	}
	for _, vid := range []frame.VID{AnyVLAN, 1, 4094} {
		if v, m, ok := CursorAfter(vid, mac(9)).Pos(); !ok || v != vid || m != mac(9) {
			t.Fatalf("CursorAfter(%d, %v).Pos() = %d, %v, %v", vid, mac(9), v, m, ok)
		}
	}
}

func TestMACPageFilters(t *testing.T) {
	h := newHarness(t, Options{})
	h.add("a", PortConfig{MAC: mac(0xa)})
	h.add("b", PortConfig{})
	h.add("gone", PortConfig{})
	h.send("a", ethFrame(frame.Broadcast, mac(0x1a), noTag, 0, 1))
	h.send("b", ethFrame(frame.Broadcast, mac(0xb), noTag, 0, 2))
	h.s.fdb.Learn(7, mac(0xb), h.s.byName["b"].id, 0, h.s.now())
	// A removed port's entries that are not flushed yet are not listed.
	h.s.fdb.Learn(1, mac(0xee), h.s.byName["gone"].id, 0, h.s.now())
	h.s.publish(h.s.snap.Load(), nil, h.s.byName["gone"].id)

	rows := func(f MACFilter) string {
		t.Helper()
		page, more, err := h.s.MACPage(MACCursor{}, 100, f)
		if err != nil || more {
			t.Fatalf("MACPage(%+v): more %v, %v", f, more, err)
		}
		var s []string
		for _, e := range page {
			s = append(s, fmt.Sprintf("%d/%s/%s", e.VID, e.MAC, e.PortName))
		}
		return fmt.Sprint(s)
	}
	tests := []struct {
		f    MACFilter
		want string
	}{
		{MACFilter{}, "[0/02:56:53:00:00:0a/a 1/02:56:53:00:00:0b/b 1/02:56:53:00:00:1a/a 7/02:56:53:00:00:0b/b]"},
		{MACFilter{ByVLAN: true, VLAN: 1}, "[1/02:56:53:00:00:0b/b 1/02:56:53:00:00:1a/a]"},
		{MACFilter{ByVLAN: true, VLAN: AnyVLAN}, "[0/02:56:53:00:00:0a/a]"},
		{MACFilter{ByVLAN: true, VLAN: 99}, "[]"},
		{MACFilter{MAC: mac(0xb)}, "[1/02:56:53:00:00:0b/b 7/02:56:53:00:00:0b/b]"},
		{MACFilter{Port: "a"}, "[0/02:56:53:00:00:0a/a 1/02:56:53:00:00:1a/a]"},
		{MACFilter{Port: "b", ByVLAN: true, VLAN: 7, MAC: mac(0xb)}, "[7/02:56:53:00:00:0b/b]"},
	}
	for _, tt := range tests {
		if got := rows(tt.f); got != tt.want {
			t.Errorf("MACPage(%+v) = %s, want %s", tt.f, got, tt.want)
		}
	}
	if _, _, err := h.s.MACPage(MACCursor{}, 10, MACFilter{Port: "gone"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a filter on a missing port: %v", err)
	}
}

// BenchmarkMACPage reads one page of 1,000 rows from a 600,000-entry
// table: the cost of a paged read is one scan of the table, and its memory
// is the page's, not the table's.
func BenchmarkMACPage(b *testing.B) {
	const n = 600_000
	h := newHarness(b, Options{FDBSize: n})
	for i := range 8 {
		h.add(fmt.Sprint("p", i), PortConfig{})
	}
	now := h.s.now()
	for i := range n {
		if res, _ := h.s.fdb.Learn(frame.VID(1+i%4), macN(i), PortID(i%8), 0, now); res != Learned {
			b.Fatalf("learn %d: %v", i, res)
		}
	}
	for _, c := range []struct {
		name   string
		after  MACCursor
		filter MACFilter
	}{
		{"first", MACCursor{}, MACFilter{}},
		{"middle", CursorAfter(3, macN(n/2)), MACFilter{}},
		{"port", MACCursor{}, MACFilter{Port: "p3"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if page, more, err := h.s.MACPage(c.after, 1000, c.filter); err != nil || len(page) != 1000 || !more {
					b.Fatalf("%d rows, more %v, %v", len(page), more, err)
				}
			}
		})
	}
}
