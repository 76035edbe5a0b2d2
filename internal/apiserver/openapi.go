package apiserver

import (
	_ "embed"
	"net/http"
)

// openAPI describes the API; TestOpenAPIMatchesRoutes keeps it true.
//
//go:embed openapi.json
var openAPI []byte

func (s *Server) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPI)
}
