// Package apiserver serves vswitchd's REST API (package api) on a unix
// socket. It is plain HTTP: reads come from the daemon's controller (the
// stored state, the running switches), and every write is handed to the
// controller (daemon.Controller.Change), which validates it, checks it
// against the host, applies it and stores it only if the host took it. A
// rejected write changes nothing, and the error names the field or the
// step that failed.
package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/sockfile"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vmrun"
)

// Server is the API over the daemon's controller: plain HTTP, every write
// handed to the controller, which validates, applies and stores it.
type Server struct {
	c       *daemon.Controller
	log     *slog.Logger
	mux     *http.ServeMux
	console Console // nil: vswitchd serves no web console
}

// Console is the web console (web.Console) as the API manages it.
type Console interface {
	URL() string
	Rotate() (string, error)
}

// SetConsole names the web console whose URL and token the API hands out.
func (s *Server) SetConsole(c Console) { s.console = c }

// New returns a server; call Handler.
func New(c *daemon.Controller, log *slog.Logger) *Server {
	s := &Server{c: c, log: log, mux: http.NewServeMux()}
	s.routes()
	return s
}

// Handler returns the HTTP handler. A read asked of another host of the
// cluster (api.HostHeader) is answered by that host.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.onHost(w, r, r.Header.Get(api.HostHeader)) {
			s.mux.ServeHTTP(w, r)
		}
	})
}

// Listen opens the unix socket at path with the given mode (0600: root
// only), replacing a stale socket file. A socket another process serves
// (another vswitchd) is refused and left alone.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := sockfile.RemoveStale(path); err != nil {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// routeTable is every route; the OpenAPI document is checked against it.
var routeTable = []struct {
	method, path string
	handler      func(*Server) http.HandlerFunc
}{
	{"GET", "/v1/state", func(s *Server) http.HandlerFunc { return s.getState }},
	{"GET", "/v1/host", func(s *Server) http.HandlerFunc { return s.getHost }},
	{"PUT", "/v1/host", func(s *Server) http.HandlerFunc { return s.putHost }},
	{"GET", "/v1/hosts", func(s *Server) http.HandlerFunc { return s.listHosts }},
	{"GET", "/v1/switches", func(s *Server) http.HandlerFunc { return s.listSwitches }},
	{"POST", "/v1/switches", func(s *Server) http.HandlerFunc { return s.addSwitch }},
	{"GET", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.getSwitch }},
	{"PUT", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.setSwitch }},
	{"DELETE", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.removeSwitch }},
	{"GET", "/v1/switches/{name}/fdb", func(s *Server) http.HandlerFunc { return s.getFDB }},
	{"GET", "/v1/switches/{name}/ports", func(s *Server) http.HandlerFunc { return s.getPorts }},
	{"GET", "/v1/switches/{name}/stats", func(s *Server) http.HandlerFunc { return s.getSwitchStats }},
	{"GET", "/v1/vms", func(s *Server) http.HandlerFunc { return s.listVMs }},
	{"POST", "/v1/vms", func(s *Server) http.HandlerFunc { return s.addVM }},
	{"DELETE", "/v1/vms/{name}", func(s *Server) http.HandlerFunc { return s.removeVM }},
	{"PUT", "/v1/vms/{name}", func(s *Server) http.HandlerFunc { return s.setVM }},
	{"POST", "/v1/vms/{name}/start", func(s *Server) http.HandlerFunc { return s.startVM }},
	{"POST", "/v1/vms/{name}/stop", func(s *Server) http.HandlerFunc { return s.stopVM }},
	{"POST", "/v1/vms/{name}/move", func(s *Server) http.HandlerFunc { return s.moveVM }},
	{"GET", "/v1/vms/{name}/status", func(s *Server) http.HandlerFunc { return s.vmStatus }},
	{"GET", "/v1/vms/{name}/console", func(s *Server) http.HandlerFunc { return s.vmConsole }},
	{"GET", "/v1/adapters", func(s *Server) http.HandlerFunc { return s.listAdapters }},
	{"POST", "/v1/adapters", func(s *Server) http.HandlerFunc { return s.addAdapter }},
	{"GET", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.getAdapter }},
	{"PUT", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.setAdapter }},
	{"DELETE", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.removeAdapter }},
	{"GET", "/v1/ports", func(s *Server) http.HandlerFunc { return s.getPortStates }},
	{"GET", "/v1/stats", func(s *Server) http.HandlerFunc { return s.getStats }},
	{"GET", "/v1/stats/switches", func(s *Server) http.HandlerFunc { return s.listSwitchStats }},
	{"GET", "/v1/topology", func(s *Server) http.HandlerFunc { return s.getTopology }},
	{"GET", "/v1/events", func(s *Server) http.HandlerFunc { return s.events }},
	{"GET", "/v1/host/nics", func(s *Server) http.HandlerFunc { return s.listNICs }},
	{"GET", "/v1/console", func(s *Server) http.HandlerFunc { return s.getConsole }},
	{"POST", "/v1/console/token", func(s *Server) http.HandlerFunc { return s.rotateConsole }},
	{"GET", "/v1/openapi.json", func(s *Server) http.HandlerFunc { return s.getOpenAPI }},
}

func (s *Server) routes() {
	for _, r := range routeTable {
		s.mux.HandleFunc(r.method+" "+r.path, r.handler(s))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &api.Error{Code: api.CodeNotFound, Message: fmt.Sprintf("no such resource: %s %s", r.Method, r.URL.Path)})
	})
}

// change runs one write through the controller and answers its outcome.
func (s *Server) change(w http.ResponseWriter, edit func(c *config.Config) (*api.Result, error)) {
	res := &api.Result{}
	out, err := s.c.Change(func(c *config.Config) error {
		r, err := edit(c)
		if r != nil {
			res = r
		}
		return err
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	res.Revision, res.Changes = out.Revision, out.Changes
	res.Warnings = append(res.Warnings, out.Warnings...)
	writeJSON(w, http.StatusOK, res)
}

// fail maps an error to its HTTP status and envelope.
func (s *Server) fail(w http.ResponseWriter, err error) {
	e := &api.Error{Message: err.Error()}
	status := http.StatusInternalServerError
	var refused *daemon.RefusedError
	switch {
	case errors.As(err, &refused):
		status, e.Code, e.Step = http.StatusInternalServerError, api.CodeFailed, refused.Step
	case errors.Is(err, config.ErrTooLarge):
		status, e.Code = http.StatusRequestEntityTooLarge, api.CodeTooLarge
	case errors.Is(err, field.ErrInvalid):
		status, e.Code, e.Problems = http.StatusBadRequest, api.CodeInvalid, field.All(err)
	case errors.Is(err, errBadBody):
		status, e.Code = http.StatusBadRequest, api.CodeInvalid
	case errors.Is(err, config.ErrNotFound):
		status, e.Code = http.StatusNotFound, api.CodeNotFound
	case errors.Is(err, config.ErrInUse):
		status, e.Code = http.StatusConflict, api.CodeInUse
	case errors.Is(err, vmrun.ErrCannotRun):
		status, e.Code = http.StatusBadRequest, api.CodeInvalid
	case errors.Is(err, vmrun.ErrRunning), errors.Is(err, vmrun.ErrNotRunning):
		status, e.Code = http.StatusConflict, api.CodeConflict
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, daemon.ErrHostDown):
		status, e.Code = http.StatusServiceUnavailable, api.CodeUnavailable
	case errors.Is(err, config.ErrPoolExhausted), errors.Is(err, store.ErrLocked), errors.Is(err, store.ErrStale), errors.Is(err, daemon.ErrBlocked):
		status, e.Code = http.StatusConflict, api.CodeConflict
	default:
		e.Code = api.CodeFailed
		s.log.Error("request failed", "err", err)
	}
	writeError(w, status, e)
}

func writeError(w http.ResponseWriter, status int, e *api.Error) {
	writeJSON(w, status, api.ErrorBody{Error: *e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

var errBadBody = errors.New("bad request body")

// decode reads a request body strictly (config.Decode).
func decode(r *http.Request, v any) error { return decodeFrom(r.Body, v) }

// decodeFrom is decode for a body from rd (one already read, say).
func decodeFrom(rd io.Reader, v any) error {
	if err := config.Decode(rd, v); err != nil {
		if errors.Is(err, config.ErrTooLarge) {
			return err
		}
		return fmt.Errorf("%w: %w", errBadBody, err)
	}
	return nil
}
