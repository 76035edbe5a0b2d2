package apiserver

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/port/mem"
	"github.com/vswitch/vswitch/internal/store"
)

// probe attaches a port to the running switch sw behind the daemon's back,
// in VLAN vid, and returns the test's end of it.
func (e *env) probe(sw, name string, vid frame.VID, counters map[string]uint64) *mem.Port {
	e.t.Helper()
	p, err := apitest.Probe(e.d, sw, name, vid, counters)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// learn sends a broadcast from each source in turn into p.
func (e *env) learn(p *mem.Port, srcs ...frame.MAC) { apitest.Learn(p, srcs...) }

// walk reads the whole MAC table of sw in pages of limit rows.
func (e *env) walk(sw string, limit int, filter url.Values) (rows []api.FDBEntry, pages int) {
	e.t.Helper()
	q := url.Values{"limit": {fmt.Sprint(limit)}}
	for k, v := range filter {
		q[k] = v
	}
	for {
		var page api.FDBPage
		if code := e.do("GET", "/v1/switches/"+sw+"/fdb?"+q.Encode(), "", &page); code != 200 {
			e.t.Fatalf("fdb page %d: %d", pages, code)
		}
		pages++
		if len(page.Entries) > limit || page.Next != "" && len(page.Entries) != limit {
			e.t.Fatalf("page %d: %d rows of %d, next %q", pages, len(page.Entries), limit, page.Next)
		}
		rows = append(rows, page.Entries...)
		if page.Next == "" {
			return rows, pages
		}
		if last := page.Entries[len(page.Entries)-1]; page.Next != fmt.Sprintf("%d/%s", last.VLAN, last.MAC) {
			e.t.Fatalf("next %q is not the last row %+v", page.Next, last)
		}
		q.Set("after", page.Next)
	}
}

func srcMAC(i int) frame.MAC { return frame.MAC{0x02, 0x77, 0, 0, byte(i >> 8), byte(i)} }

func TestFDBPages(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.ok("POST", "/v1/adapters", `{"vm":"web","name":"eth0","switch":"int0","mac":"02:56:53:00:00:01","attachment":{"kind":"netns","namespace":"web"}}`)
	before, _ := e.walk("int0", 1000, nil)
	p10, p20 := e.probe("int0", "p10", 10, nil), e.probe("int0", "p20", 20, nil)
	for i := range 150 {
		e.learn(p10, srcMAC(i))
	}
	for i := range 100 {
		e.learn(p20, srcMAC(1000+i))
	}
	want := len(before) + 250
	var all []api.FDBEntry
	for deadline := time.Now().Add(10 * time.Second); len(all) != want; time.Sleep(10 * time.Millisecond) {
		if all, _ = e.walk("int0", 10_000, nil); time.Now().After(deadline) {
			t.Fatalf("the table has %d rows, want %d", len(all), want)
		}
	}
	// Any page size walks every row once, in (VLAN, MAC) order.
	for _, limit := range []int{1, 7, 100, 10_000} {
		rows, pages := e.walk("int0", limit, nil)
		if !slices.EqualFunc(rows, all, func(a, b api.FDBEntry) bool { return a.VLAN == b.VLAN && a.MAC == b.MAC && a.Port == b.Port }) {
			t.Fatalf("limit %d: the walk differs from a single read", limit)
		}
		if wantPages := max((want+limit-1)/limit, 1); pages != wantPages && pages != wantPages+1 {
			t.Fatalf("limit %d: %d pages for %d rows", limit, pages, want)
		}
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if cmp.Or(cmp.Compare(a.VLAN, b.VLAN), strings.Compare(a.MAC, b.MAC)) >= 0 {
			t.Fatalf("rows %d and %d out of order: %+v, %+v", i-1, i, a, b)
		}
	}
	// The default page is 1,000 rows; the filters select.
	var page api.FDBPage
	if e.do("GET", "/v1/switches/int0/fdb", "", &page); len(page.Entries) != want || page.Next != "" {
		t.Fatalf("default page: %d rows, next %q", len(page.Entries), page.Next)
	}
	filters := []struct {
		q     url.Values
		count int
		check func(api.FDBEntry) bool
	}{
		{url.Values{"vlan": {"20"}}, 100, func(r api.FDBEntry) bool { return r.VLAN == 20 && r.Port == "p20" }},
		{url.Values{"vlan": {"0"}}, len(before), func(r api.FDBEntry) bool { return r.VLAN == 0 && r.Static }},
		{url.Values{"port": {"p10"}}, 150, func(r api.FDBEntry) bool { return r.VLAN == 10 && !r.Static }},
		{url.Values{"mac": {"02-77-00-00-00-05"}}, 1, func(r api.FDBEntry) bool { return r.MAC == "02:77:00:00:00:05" && r.Port == "p10" }},
		{url.Values{"port": {"p10"}, "vlan": {"20"}}, 0, nil},
	}
	for _, f := range filters {
		rows, _ := e.walk("int0", 9, f.q)
		if len(rows) != f.count {
			t.Errorf("%v: %d rows, want %d", f.q, len(rows), f.count)
		}
		for _, r := range rows {
			if !f.check(r) {
				t.Errorf("%v: row %+v", f.q, r)
				break
			}
		}
	}
}

func TestFDBBadParameters(t *testing.T) {
	e := newEnv(t)
	e.setup()
	tests := []struct {
		name, query string
		want        []string
	}{
		{"limit 0", "limit=0", []string{`"field": "limit"`, `"value": "0"`, "1 to 10000"}},
		{"limit over the maximum", "limit=10001", []string{`"field": "limit"`, `"value": "10001"`, "1 to 10000"}},
		{"limit not a number", "limit=all", []string{`"field": "limit"`, `"value": "all"`}},
		{"VLAN 4095", "vlan=4095", []string{`"field": "vlan"`, `"value": "4095"`, "1 to 4094"}},
		{"VLAN not a number", "vlan=ten", []string{`"field": "vlan"`, `"value": "ten"`}},
		{"malformed MAC", "mac=02:77:zz:00:00:01", []string{`"field": "mac"`, `"value": "02:77:zz:00:00:01"`, "aa:bb:cc:dd:ee:ff"}},
		{"zero MAC", "mac=00:00:00:00:00:00", []string{`"field": "mac"`, "not all zero"}},
		{"cursor without a VLAN", "after=02:77:00:00:00:01", []string{`"field": "after"`, `"value": "02:77:00:00:00:01"`, "VLAN/MAC"}},
		{"cursor with a bad MAC", "after=10/02:77", []string{`"field": "after"`, `"value": "10/02:77"`}},
		{"cursor with a bad VLAN", "after=5000/02:77:00:00:00:01", []string{`"field": "after"`}},
		{"missing port", "port=ghost", []string{`"field": "port"`, `"value": "ghost"`, "a port of switch int0"}},
		{"every problem at once", "limit=-1&vlan=x&mac=y", []string{`"field": "limit"`, `"field": "vlan"`, `"field": "mac"`}},
	}
	for _, tt := range tests {
		e.refused(tt.name, "GET", "/v1/switches/int0/fdb?"+tt.query, "", 400, "invalid", tt.want)
	}
	e.refused("switch not running", "GET", "/v1/switches/nope/fdb", "", 404, "not_found", []string{"nope"})
}

func TestStatsShowBackendCounters(t *testing.T) {
	e := newEnv(t)
	e.setup()
	e.probe("int0", "vm", 1, map[string]uint64{"bad-peers": 3, "oversize": 0})
	var ports []api.PortStats
	e.do("GET", "/v1/stats", "", &ports)
	var found bool
	for _, p := range ports {
		switch {
		case p.Port == "vm":
			found = true
			if len(p.Backend) != 2 || p.Backend["bad-peers"] != 3 {
				t.Errorf("backend counters of vm: %v", p.Backend)
			}
		case p.Backend != nil:
			t.Errorf("port %s/%s has backend counters %v", p.Switch, p.Port, p.Backend)
		}
	}
	if !found {
		t.Fatalf("GET /v1/stats has no row for vm: %+v", ports)
	}
	var one api.SwitchStats
	if code := e.do("GET", "/v1/switches/int0/stats", "", &one); code != 200 || one.Switch != "int0" || len(one.Ports) != 2 ||
		one.Ports[1].Backend["bad-peers"] != 3 || one.SuppressedMoves != e.d.Switch("int0").SuppressedMoves() {
		t.Fatalf("switch stats: %d %+v", code, one)
	}
	var list []api.SwitchStats
	if e.do("GET", "/v1/stats/switches", "", &list); len(list) != 2 || list[0].Switch != "int0" || list[1].Switch != "ext0" || len(list[1].Ports) != 2 {
		t.Fatalf("stats of every switch: %+v", list)
	}
	e.refused("stats of a switch not running", "GET", "/v1/switches/nope/stats", "", 404, "not_found", []string{"nope"})
}

// TestKernelTablePaged: the pages of one listing of a kernel switch's MAC
// table are cut from one read of the (shared, possibly huge) table; a new
// listing reads it again.
func TestKernelTablePaged(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "v.db"), &config.Config{Host: config.DefaultHost("test")})
	if err != nil {
		t.Fatal(err)
	}
	k := &apitest.Kernel{}
	d := apitest.ControllerWithKernel(st, &apitest.Backend{FailOpen: map[string]bool{}}, apitest.Host{}, &apitest.Runner{}, k)
	if _, err := d.Start(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(d, slog.New(slog.DiscardHandler)).Handler())
	t.Cleanup(func() { srv.Close(); d.Close(); st.Close() })
	e := &env{t: t, url: srv.URL, st: st, d: d}
	if code := e.do("POST", "/v1/switches", `{"name":"k0","type":"private","datapath":"kernel"}`, nil); code != 200 {
		t.Fatalf("add switch: %d", code)
	}
	e.do("POST", "/v1/vms", `{"name":"web"}`, nil)
	for i := range 3 {
		body := fmt.Sprintf(`{"vm":"web","name":"eth%d","switch":"k0","mac":"02:00:00:00:00:0%d","attachment":{"kind":"tap","device":"kt%d"}}`, i, i+1, i)
		if code := e.do("POST", "/v1/adapters", body, nil); code != 200 {
			t.Fatalf("add adapter %d: %d", i, code)
		}
	}
	var macs []string
	for next, pages := "", 0; ; pages++ {
		var page api.FDBPage
		if code := e.do("GET", "/v1/switches/k0/fdb?limit=1&after="+next, "", &page); code != 200 {
			t.Fatalf("page %d: %d", pages, code)
		}
		for _, r := range page.Entries {
			macs = append(macs, r.MAC)
		}
		if next = page.Next; next == "" {
			break
		}
	}
	if len(macs) != 3 || k.TableReads() != 1 {
		t.Fatalf("paging one listing: %v, %d reads of the table; want 3 entries from one read", macs, k.TableReads())
	}
	e.do("GET", "/v1/switches/k0/fdb?limit=1", "", nil)
	if k.TableReads() != 2 {
		t.Fatalf("a new listing did not read the table again (%d reads)", k.TableReads())
	}
}
