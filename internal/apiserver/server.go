// Package apiserver serves vswitchd's REST API (package api) on a unix
// socket: reads come from the store and the running switches; every write
// is validated, checked against the host, stored in one transaction and
// then converged. A rejected write changes nothing; a change to a switch
// that the host refuses (say, a NIC that cannot be bound) is undone, and the
// error names the step that failed.
package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/store"
	"github.com/vswitch/vswitch/internal/vmrun"
)

// Host checks the host side of a state before it is stored.
type Host interface {
	// CheckNIC reports whether a physical NIC of that name exists.
	CheckNIC(name string) error
}

// Runner runs VMs with QEMU (vmrun.Runner).
type Runner interface {
	Start(vm config.VM, adapters []config.Adapter) (api.VMStatus, error)
	Stop(name string, timeout time.Duration) (api.VMStatus, error)
	Status(name string) api.VMStatus
	Console(name string) string
	// OnExit sets what is called (on another goroutine) when a VM exits.
	OnExit(func(vm string))
}

// Server is the API over one store and one daemon.
type Server struct {
	st   *store.Store
	d    *daemon.Daemon
	host Host
	run  Runner
	log  *slog.Logger
	mu   sync.Mutex      // one write at a time: store, then converge
	up   map[string]bool // VMs started here and not exited, under mu
	mux  *http.ServeMux
}

// New returns a server; call Handler or Serve.
func New(st *store.Store, d *daemon.Daemon, host Host, run Runner, log *slog.Logger) *Server {
	s := &Server{st: st, d: d, host: host, run: run, log: log, up: map[string]bool{}, mux: http.NewServeMux()}
	d.SetRunning(func(vm string) bool { return s.up[vm] }) // called by Apply, which s.mu serialises
	run.OnExit(func(vm string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.up, vm)
		s.applyLocked() // the VM's adapters go with it
	})
	s.routes()
	return s
}

// applyLocked converges to the stored state; the caller holds s.mu.
// Failures are logged too: the next change retries them.
func (s *Server) applyLocked() ([]string, error) {
	c, _, err := s.st.Load()
	if err != nil {
		s.log.Error("reading the stored state", "err", err)
		return nil, err
	}
	changes, err := s.d.Apply(c)
	if err != nil {
		s.log.Warn("converging", "err", err)
	}
	return changes, err
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Listen opens the unix socket at path with the given mode (0600: root
// only), replacing a stale socket file.
func Listen(path string, mode os.FileMode) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
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
	{"GET", "/v1/switches", func(s *Server) http.HandlerFunc { return s.listSwitches }},
	{"POST", "/v1/switches", func(s *Server) http.HandlerFunc { return s.addSwitch }},
	{"GET", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.getSwitch }},
	{"PUT", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.setSwitch }},
	{"DELETE", "/v1/switches/{name}", func(s *Server) http.HandlerFunc { return s.removeSwitch }},
	{"GET", "/v1/switches/{name}/fdb", func(s *Server) http.HandlerFunc { return s.getFDB }},
	{"GET", "/v1/switches/{name}/ports", func(s *Server) http.HandlerFunc { return s.getPorts }},
	{"GET", "/v1/vms", func(s *Server) http.HandlerFunc { return s.listVMs }},
	{"POST", "/v1/vms", func(s *Server) http.HandlerFunc { return s.addVM }},
	{"DELETE", "/v1/vms/{name}", func(s *Server) http.HandlerFunc { return s.removeVM }},
	{"PUT", "/v1/vms/{name}", func(s *Server) http.HandlerFunc { return s.setVM }},
	{"POST", "/v1/vms/{name}/start", func(s *Server) http.HandlerFunc { return s.startVM }},
	{"POST", "/v1/vms/{name}/stop", func(s *Server) http.HandlerFunc { return s.stopVM }},
	{"GET", "/v1/vms/{name}/status", func(s *Server) http.HandlerFunc { return s.vmStatus }},
	{"GET", "/v1/vms/{name}/console", func(s *Server) http.HandlerFunc { return s.vmConsole }},
	{"GET", "/v1/adapters", func(s *Server) http.HandlerFunc { return s.listAdapters }},
	{"POST", "/v1/adapters", func(s *Server) http.HandlerFunc { return s.addAdapter }},
	{"GET", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.getAdapter }},
	{"PUT", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.setAdapter }},
	{"DELETE", "/v1/vms/{vm}/adapters/{name}", func(s *Server) http.HandlerFunc { return s.removeAdapter }},
	{"GET", "/v1/stats", func(s *Server) http.HandlerFunc { return s.getStats }},
	{"GET", "/v1/topology", func(s *Server) http.HandlerFunc { return s.getTopology }},
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

// Converge applies the stored state; vswitchd calls it at start.
func (s *Server) Converge() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applyLocked()
}

// change runs one write: edit in a store transaction (with the host
// checks), then converge. If converging fails on a switch the edit added
// or changed, the previous state is stored and applied again.
func (s *Server) change(w http.ResponseWriter, edit func(c *config.Config) (*api.Result, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &api.Result{}
	var prev, next *config.Config // the stored state before, and (if it commits) after
	rev, changed, err := s.st.Update(func(c *config.Config) error {
		prev, next = c.Clone(), c
		r, err := edit(c)
		if err != nil {
			return err
		}
		if r != nil {
			res = r
		}
		return s.checkHost(prev, c)
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	res.Revision = rev
	res.Changes = []string{}
	if changed {
		changes, aerr := s.d.Apply(next)
		res.Changes = append(res.Changes, changes...)
		if failed := s.undoIfSwitchFailed(prev, next, aerr); failed != nil {
			writeError(w, http.StatusInternalServerError, failed)
			return
		}
		for _, se := range daemon.StepErrors(aerr) {
			res.Warnings = append(res.Warnings, "not applied yet (retried on the next change): "+se.Error())
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// undoIfSwitchFailed restores prev when a switch that the change added,
// altered or removed could not be set up or torn down: creating, changing
// and deleting a switch are all or nothing.
func (s *Server) undoIfSwitchFailed(prev, cur *config.Config, aerr error) *api.Error {
	for _, se := range daemon.StepErrors(aerr) {
		now, before := cur.Switch(se.Switch), prev.Switch(se.Switch)
		if now != nil && before != nil && switchJSON(before) == switchJSON(now) {
			continue
		}
		s.st.Update(func(c *config.Config) error { *c = *prev.Clone(); return nil })
		s.d.Apply(prev)
		return &api.Error{Code: api.CodeFailed, Step: se.Step,
			Message: fmt.Sprintf("switch %s could not be changed, nothing was: %v", se.Switch, se)}
	}
	return nil
}

func switchJSON(s *config.Switch) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkHost verifies what only the host can tell: that a newly used
// uplink NIC exists.
func (s *Server) checkHost(prev, next *config.Config) error {
	var l field.List
	for _, sw := range next.Switches {
		if sw.Type != config.External {
			continue
		}
		if old := prev.Switch(sw.Name); old != nil && old.Type == config.External && old.Uplink == sw.Uplink {
			continue
		}
		if err := s.host.CheckNIC(sw.Uplink); err != nil {
			l.Add(fmt.Sprintf("switches[%s].uplink", sw.Name), sw.Uplink, "an existing network interface of the host ("+err.Error()+")")
		}
	}
	return l.Err()
}

// fail maps an error to its HTTP status and envelope.
func (s *Server) fail(w http.ResponseWriter, err error) {
	e := &api.Error{Message: err.Error()}
	status := http.StatusInternalServerError
	switch {
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
	case errors.Is(err, config.ErrPoolExhausted), errors.Is(err, store.ErrLocked):
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
func decode(r *http.Request, v any) error {
	if err := config.Decode(r.Body, v); err != nil {
		if errors.Is(err, config.ErrTooLarge) {
			return err
		}
		return fmt.Errorf("%w: %w", errBadBody, err)
	}
	return nil
}
