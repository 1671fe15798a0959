package api

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// connectivity is the body of the connectivityInfo calls, in v1's shape.
type connectivity struct {
	ConnectivityInfo []store.Endpoint `json:"ConnectivityInfo"`
}

func (s *Server) getConnectivity(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	if !s.authorize(w, r, "greengrass:GetConnectivityInfo", s.thingARN(thing)) {
		return
	}
	eps, err := s.Store.Connectivity(thing)
	if err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, connectivity{ConnectivityInfo: eps})
}

func (s *Server) putConnectivity(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	if !s.authorize(w, r, "greengrass:UpdateConnectivityInfo", s.thingARN(thing)) {
		return
	}
	var body connectivity
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v; want {\"ConnectivityInfo\":[{\"Id\",\"HostAddress\",\"PortNumber\",\"Metadata\"}]}", err))
		return
	}
	if err := s.Store.SetConnectivity(thing, body.ConnectivityInfo); err != nil {
		storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, body)
}
