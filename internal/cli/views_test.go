package cli

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/apitest"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/port/mem"
)

// probe attaches a port to a running switch behind the daemon's back, in
// VLAN vid, and sends a broadcast from each of n addresses into it (see
// send); it returns the test's end of the port.
func probe(t *testing.T, ctl *daemon.Controller, sw, name string, vid frame.VID, n int, counters map[string]uint64) *mem.Port {
	t.Helper()
	if counters == nil {
		counters = map[string]uint64{}
	}
	peer, err := apitest.Probe(ctl, sw, name, vid, counters)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		send(peer, byte(i))
	}
	return peer
}

// send writes a broadcast from 02:77:00:00:00:src into p.
func send(p *mem.Port, src byte) { apitest.Learn(p, frame.MAC{0x02, 0x77, 0, 0, 0, src}) }

// viewsServer runs an API server as serve does and also returns the
// daemon's controller, whose running switches the tests attach probes to.
func viewsServer(t *testing.T) (string, *daemon.Controller) { return serveCtl(t, &apitest.Backend{}) }

func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

// rowsOf is fdb's output without the header, as "VLAN MAC PORT TYPE":
// without the spacing, which depends on the rows shown, and the age,
// which depends on when they were.
func rowsOf(out string) string {
	var rows []string
	for _, l := range lines(out)[1:] {
		rows = append(rows, strings.Join(strings.Fields(l)[:4], " "))
	}
	return strings.Join(rows, "\n")
}

func TestFDBPagesAndFilters(t *testing.T) {
	sock, ctl := viewsServer(t)
	mustRun(t, sock, "switch", "add", "int0", "--type", "internal")
	mustRun(t, sock, "vm", "add", "web")
	mustRun(t, sock, "adapter", "add", "web/eth0", "--switch", "int0", "--netns", "webns")
	probe(t, ctl, "int0", "p10", 10, 25, map[string]uint64{"bad-peers": 2, "oversize": 0})
	for deadline := time.Now().Add(10 * time.Second); len(lines(mustRun(t, sock, "fdb", "int0", "--vlan", "10"))) != 26; {
		if time.Now().After(deadline) {
			t.Fatalf("the probe's 25 addresses were not learned:\n%s", mustRun(t, sock, "fdb", "int0"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	whole := mustRun(t, sock, "fdb", "int0")
	if got := mustRun(t, sock, "fdb", "int0", "--page-size", "4"); rowsOf(got) != rowsOf(whole) || lines(got)[0] != lines(whole)[0] {
		t.Fatalf("read in pages of 4:\n%s\nin one page:\n%s", got, whole)
	}
	rows := lines(whole)
	if len(rows) < 27 || rows[0] != "VLAN  MAC                PORT      TYPE     AGE" ||
		!strings.HasPrefix(rows[1], "any   02:56:53:") || !strings.Contains(rows[1], "  web/eth0  static   -") ||
		!strings.HasPrefix(rows[len(rows)-1], "10    02:77:00:00:00:18  p10       learned  ") {
		t.Fatalf("fdb:\n%s", whole)
	}
	tests := []struct {
		args []string
		want []string // the rows after the header
	}{
		{[]string{"--limit", "3", "--page-size", "2"}, rows[1:4]},
		{[]string{"--limit", "100"}, rows[1:]},
		{[]string{"--port", "p10", "--page-size", "7"}, rows[len(rows)-25:]},
		{[]string{"--mac", "02-77-00-00-00-05"}, rows[len(rows)-20 : len(rows)-19]},
		{[]string{"--vlan", "0"}, rows[1 : len(rows)-25]},
		{[]string{"--vlan", "20"}, nil},
	}
	for _, tt := range tests {
		got, want := rowsOf(mustRun(t, sock, append([]string{"fdb", "int0"}, tt.args...)...)), rowsOf(strings.Join(append([]string{"header"}, tt.want...), "\n"))
		if got != want {
			t.Errorf("fdb int0 %s:\n%s\nwant\n%s", strings.Join(tt.args, " "), got, want)
		}
	}

	// JSON streamed page by page is the array a single read makes.
	one := mustRun(t, sock, "-o", "json", "fdb", "int0")
	var entries []api.FDBEntry
	if err := json.Unmarshal([]byte(one), &entries); err != nil || len(entries) != len(rows)-1 {
		t.Fatalf("fdb -o json: %d entries, %v\n%s", len(entries), err, one)
	}
	var want strings.Builder
	enc := json.NewEncoder(&want)
	enc.SetIndent("", "  ")
	enc.Encode(entries)
	if one != want.String() {
		t.Fatalf("fdb -o json is not laid out as -o json elsewhere:\n%s\nwant\n%s", one, want.String())
	}
	var paged []api.FDBEntry
	if err := json.Unmarshal([]byte(mustRun(t, sock, "-o", "json", "fdb", "int0", "--page-size", "3")), &paged); err != nil || len(paged) != len(entries) {
		t.Fatalf("fdb -o json in pages of 3: %d entries, %v", len(paged), err)
	}
	for i := range paged {
		if paged[i].MAC != entries[i].MAC || paged[i].VLAN != entries[i].VLAN || paged[i].Port != entries[i].Port {
			t.Fatalf("fdb -o json in pages of 3: row %d is %+v, want %+v", i, paged[i], entries[i])
		}
	}
	if out := mustRun(t, sock, "-o", "json", "fdb", "int0", "--vlan", "99"); out != "[]\n" {
		t.Fatalf("an empty table as JSON: %q", out)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--vlan", "5000"}, ExitFailed, `vlan "5000": 0 (the static entries`},
		{[]string{"--mac", "zz"}, ExitFailed, `mac "zz"`},
		{[]string{"--port", "ghost"}, ExitFailed, `port "ghost": a port of switch int0`},
		{[]string{"--limit", "-1"}, ExitUsage, "--limit -1"},
		{[]string{"--page-size", "0"}, ExitUsage, "--page-size 0: want 1 to 10000"},
	} {
		code, out, errOut := run(sock, append([]string{"fdb", "int0"}, tt.args...)...)
		if code != tt.code || !strings.Contains(errOut, tt.want) || out != "" {
			t.Errorf("fdb int0 %s: exit %d, stdout %q, stderr %q; want exit %d naming %q", strings.Join(tt.args, " "), code, out, errOut, tt.code, tt.want)
		}
	}
	if code, _, _ := run(sock, "fdb", "ghost"); code != ExitNotFound {
		t.Errorf("fdb of a missing switch: exit %d", code)
	}
}

func TestStatsShowBackendCounters(t *testing.T) {
	sock, ctl := viewsServer(t)
	mustRun(t, sock, "switch", "add", "int0", "--type", "internal")
	probe(t, ctl, "int0", "vm", 1, 0, map[string]uint64{"bad-peers": 2, "oversize": 0, "connections": 3})
	out := mustRun(t, sock, "stats")
	if strings.Contains(out, "not reported") {
		t.Fatalf("stats shows suppressed moves before any:\n%s", out)
	}
	var got []string
	for _, l := range lines(out) {
		f := strings.Fields(l)
		got = append(got, f[0]+" "+f[1]+" "+f[len(f)-1])
	}
	if want := "SWITCH PORT BACKEND\nint0 host -\nint0 vm bad-peers=2,connections=3"; strings.Join(got, "\n") != want {
		t.Fatalf("stats:\n%s", out)
	}
	var rows []api.PortStats
	if err := json.Unmarshal([]byte(mustRun(t, sock, "-o", "json", "stats", "int0")), &rows); err != nil ||
		len(rows) != 2 || rows[1].Backend["bad-peers"] != 2 || rows[0].Backend != nil {
		t.Fatalf("stats -o json: %v %+v", err, rows)
	}

	// A station that moves back and forth faster than moves are reported.
	sw := ctl.CoreSwitch("int0")
	ports := map[string]*mem.Port{"a": probe(t, ctl, "int0", "a", 5, 0, nil), "b": probe(t, ctl, "int0", "b", 5, 0, nil)}
	for i := range 40 {
		name := string("ab"[i%2])
		before, _ := sw.Counters(name)
		send(ports[name], 1)
		for c := before; c.RxPackets == before.RxPackets; c, _ = sw.Counters(name) {
			time.Sleep(time.Millisecond)
		}
	}
	n := sw.SuppressedMoves()
	if n == 0 {
		t.Fatal("40 moves in a moment and none suppressed")
	}
	if out := mustRun(t, sock, "stats", "int0"); !strings.HasSuffix(out, fmt.Sprintf("\nswitch int0: %d station moves not reported (rate limit)\n", n)) {
		t.Fatalf("stats after suppressed moves:\n%s", out)
	}
}
