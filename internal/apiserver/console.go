package apiserver

import (
	"net/http"

	"github.com/vswitch/vswitch/internal/api"
)

// The web console's URL is handed out on the unix socket only (the
// console itself refuses these paths).

func (s *Server) getConsole(w http.ResponseWriter, r *http.Request) {
	if s.consoleOff(w) {
		return
	}
	writeJSON(w, http.StatusOK, api.Console{URL: s.console.URL()})
}

func (s *Server) rotateConsole(w http.ResponseWriter, r *http.Request) {
	if s.consoleOff(w) {
		return
	}
	u, err := s.console.Rotate()
	if err != nil {
		s.fail(w, err)
		return
	}
	s.log.Info("the web console's token was replaced: browsers logged in before must log in again")
	writeJSON(w, http.StatusOK, api.Console{URL: u})
}

func (s *Server) consoleOff(w http.ResponseWriter) bool {
	if s.console != nil {
		return false
	}
	writeError(w, http.StatusNotFound, &api.Error{Code: api.CodeNotFound,
		Message: "the web console is off: start vswitchd with --web 127.0.0.1:8470 (or another address, with --web-cert and --web-key)"})
	return true
}
