package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Event stream (GET /v1/events, server-sent events): what a live view
// needs, pushed when it changes instead of polled. Each event's data is
// a JSON document:
//
//	event: topology   the topology (as GET /v1/topology?host=), whenever
//	                  it differs from the last one sent: a write through
//	                  any host, a port that came up or went down, a VM
//	                  that started or stopped
//	event: stats      the counters of the switch named by ?stats= (as GET
//	                  /v1/switches/{name}/stats), at most once a second
//	                  and only when they changed
//
// A comment line keeps an idle stream open through proxies.
const (
	eventsTick      = time.Second      // counters are looked at this often
	eventsKeepAlive = 15 * time.Second // an idle stream gets a comment this often
)

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	host, stats := r.URL.Query().Get("host"), r.URL.Query().Get("stats")
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{}) // the request is read: the server's read timeout does not end the stream
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(eventsTick)
	defer tick.Stop()
	var lastTopology, lastStats []byte
	lastWrite := time.Now()
	for {
		changed := s.c.Changed() // before reading: a change from now on wakes the loop
		wrote := false
		if t, err := s.topology(host); err == nil {
			wrote = sendIfNew(w, "topology", t, &lastTopology) || wrote
		}
		if sw := s.c.Switch(stats); stats != "" && sw != nil {
			wrote = sendIfNew(w, "stats", switchStats(stats, sw), &lastStats) || wrote
		}
		if !wrote && time.Since(lastWrite) >= eventsKeepAlive {
			fmt.Fprint(w, ": keep-alive\n\n")
			wrote = true
		}
		if wrote {
			lastWrite = time.Now()
			rc.SetWriteDeadline(time.Now().Add(eventsKeepAlive * 2))
			if rc.Flush() != nil {
				return
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// sendIfNew writes v as an event named name unless it is what was sent last.
func sendIfNew(w http.ResponseWriter, name string, v any, last *[]byte) bool {
	b, err := json.Marshal(v)
	if err != nil || bytes.Equal(b, *last) {
		return false
	}
	*last = b
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return true
}
