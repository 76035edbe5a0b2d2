package apiserver

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/field"
)

// In a cluster, the live data of another host (counters, MAC tables, VM
// state) is read from that host's API: the host asked fetches it over
// the underlay from the other host's peer listener, which serves reads
// only, to callers that present the cluster's token. Hot data is never
// copied into etcd.

var peerClient = &http.Client{Timeout: 10 * time.Second}

// onHost serves a read asked of another host (api.HostHeader) by fetching
// it from that host; it reports whether it did.
func (s *Server) onHost(w http.ResponseWriter, r *http.Request, host string) bool {
	if host == "" || host == s.c.HostName() || consolePath(r.URL.Path) {
		return false // a console's URL is only ever this host's
	}
	if r.Method != http.MethodGet {
		s.fail(w, field.New(api.HostHeader, host, "only on reads: a write goes to the cluster's state through any host"))
		return true
	}
	addr, token, err := s.c.Peer(host)
	if err != nil {
		s.fail(w, err)
		return true
	}
	s.proxy(w, r, host, addr, token)
	return true
}

// proxy answers r with what host's peer listener at addr answers to it.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, host, addr, token string) {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, "http://"+addr+r.URL.RequestURI(), nil)
	if err != nil {
		s.fail(w, err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := peerClient.Do(req)
	if err != nil {
		writeError(w, http.StatusBadGateway, &api.Error{Code: api.CodeUnavailable, Message: fmt.Sprintf("host %s (%s) did not answer: %v", host, addr, err)})
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// PeerHandler serves the other hosts of the cluster: reads only, with
// the cluster's token; anything else is 401 (or 405) and nothing more.
func (s *Server) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if consolePath(r.URL.Path) {
			writeError(w, http.StatusForbidden, &api.Error{Code: api.CodeUnauthorized, Message: "a host's console token is its own: vswitchctl console on that host"})
			return
		}
		want := s.c.PeerToken()
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if want == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			writeError(w, http.StatusUnauthorized, &api.Error{Code: api.CodeUnauthorized, Message: "a host of the cluster's token is required"})
			return
		}
		if r.Method != http.MethodGet {
			writeError(w, http.StatusMethodNotAllowed, &api.Error{Code: api.CodeInvalid, Message: "reads only: writes go to the cluster's state"})
			return
		}
		r.Header.Del(api.HostHeader) // answered here, never passed on
		s.mux.ServeHTTP(w, r)
	})
}

// consolePath reports whether path is the web console's token's: never
// served to or fetched from another host.
func consolePath(path string) bool { return strings.HasPrefix(path, "/v1/console") }
