package apiserver

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/api"
)

// event is one server-sent event.
type event struct{ name, data string }

// readEvents sends the stream's events on a channel until it ends.
func readEvents(t *testing.T, url string) <-chan event {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, ct)
	}
	t.Cleanup(func() { resp.Body.Close() })
	out := make(chan event, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<22)
		var ev event
		for sc.Scan() {
			switch l := sc.Text(); {
			case strings.HasPrefix(l, "event: "):
				ev.name = l[7:]
			case strings.HasPrefix(l, "data: "):
				ev.data = l[6:]
			case l == "" && ev.name != "":
				out <- ev
				ev = event{}
			}
		}
	}()
	return out
}

func next(t *testing.T, events <-chan event, name string) string {
	t.Helper()
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before a %s event", name)
			}
			if ev.name == name {
				return ev.data
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event within 5 s", name)
		}
	}
}

// TestEvents: the stream starts with the topology, pushes it again after
// a write (and only then), and pushes the counters of the switch asked
// for; the server's read and write timeouts (vswitchd's socket has them)
// do not end it.
func TestEvents(t *testing.T) {
	e := newEnv(t)
	if code := e.do("POST", "/v1/switches", `{"name":"lan0","type":"private"}`, nil); code != 200 {
		t.Fatalf("add switch: %d", code)
	}
	srv := httptest.NewUnstartedServer(New(e.d, slog.New(slog.DiscardHandler)).Handler())
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	events := readEvents(t, srv.URL+"/v1/events?stats=lan0")
	var topo api.Topology
	if err := json.Unmarshal([]byte(next(t, events, "topology")), &topo); err != nil || len(topo.Switches) != 1 {
		t.Fatalf("first topology: %v %+v", err, topo)
	}
	var stats api.SwitchStats
	if err := json.Unmarshal([]byte(next(t, events, "stats")), &stats); err != nil || stats.Switch != "lan0" {
		t.Fatalf("stats: %v %+v", err, stats)
	}
	if code := e.do("POST", "/v1/vms", `{"name":"web"}`, nil); code != 200 {
		t.Fatalf("add VM: %d", code)
	}
	if err := json.Unmarshal([]byte(next(t, events, "topology")), &topo); err != nil || len(topo.VMs) != 1 || topo.VMs[0].Name != "web" {
		t.Fatalf("topology after the write: %v %+v", err, topo)
	}
	select {
	case ev := <-events:
		if ev.name == "topology" {
			t.Fatalf("an unchanged topology was pushed again: %s", ev.data)
		}
	case <-time.After(2500 * time.Millisecond):
	}
	if code := e.do("POST", "/v1/vms", `{"name":"db"}`, nil); code != 200 {
		t.Fatalf("add VM: %d", code)
	}
	if err := json.Unmarshal([]byte(next(t, events, "topology")), &topo); err != nil || len(topo.VMs) != 2 {
		t.Fatalf("topology after the stream outlived the server's timeouts: %v %+v", err, topo)
	}
}
