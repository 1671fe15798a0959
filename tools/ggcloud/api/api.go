// Package api serves ggcloud's HTTPS control-plane API (DESIGN.md
// "Control plane"). Every call is made with a client certificate; the
// certificate must be registered, and the AWS IoT policies attached to it
// must allow the call's action on its resource, or the answer is 403
// naming both.
//
// Served so far: the Discovery API (GET /greengrass/discover/thing/{thing})
// and GET and PUT /greengrass/things/{thing}/connectivityInfo.
package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/ggcore/ggcore/tools/ggcloud/policy"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// Server is the API. Region and Account make the ARNs that policies name.
type Server struct {
	Store   *store.Store
	Region  string
	Account string
	Log     *slog.Logger
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /greengrass/discover/thing/{thing}", s.discover)
	mux.HandleFunc("GET /greengrass/things/{thing}/connectivityInfo", s.getConnectivity)
	mux.HandleFunc("PUT /greengrass/things/{thing}/connectivityInfo", s.putConnectivity)
	return mux
}

// thingARN is the ARN of a thing in this region and account.
func (s *Server) thingARN(thing string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", s.Region, s.Account, thing)
}

// authorize identifies the caller by its client certificate and checks
// that its policies allow action on resource; it writes the refusal and
// returns false otherwise.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action, resource string) bool {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusUnauthorized, "a client certificate is required")
		return false
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	id := hex.EncodeToString(sum[:])
	caller, err := s.Store.CallerOf(id)
	if errors.Is(err, store.ErrNotFound) {
		s.log().Info("call refused", "certificate", id, "action", action, "reason", "certificate not registered")
		writeError(w, http.StatusForbidden, fmt.Sprintf("certificate %s is not registered", id))
		return false
	}
	if err != nil {
		s.log().Error("call failed", "certificate", id, "error", err)
		writeError(w, http.StatusInternalServerError, "state store unavailable")
		return false
	}
	d := policy.Decide(caller.Policies, policy.Request{Action: action, Resource: resource, ThingName: caller.Thing.Name})
	if !d.Allowed {
		s.log().Info("call refused", "thing", caller.Thing.Name, "action", action, "resource", resource, "reason", d.Reason)
		writeError(w, http.StatusForbidden, fmt.Sprintf("not authorized: %s", d.Reason))
		return false
	}
	return true
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.Default()
	}
	return s.Log
}

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

// Discovery response, in v1's shape: PascalCase keys, camelCase thingArn.
type (
	discoverResponse struct {
		GGGroups []discoverGroup `json:"GGGroups"`
	}
	discoverGroup struct {
		GGGroupId string         `json:"GGGroupId"`
		Cores     []discoverCore `json:"Cores"`
		CAs       []string       `json:"CAs"`
	}
	discoverCore struct {
		ThingArn     string           `json:"thingArn"`
		Connectivity []store.Endpoint `json:"Connectivity"`
	}
)

// discover answers the Discovery API: the groups the thing belongs to,
// each with its core's endpoints and the group CAs.
func (s *Server) discover(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	if !s.authorize(w, r, "greengrass:Discover", s.thingARN(thing)) {
		return
	}
	groups, err := s.Store.GroupsOf(thing)
	if err != nil {
		storeError(w, err)
		return
	}
	resp := discoverResponse{GGGroups: []discoverGroup{}}
	for _, g := range groups {
		eps, err := s.Store.Connectivity(g.Core)
		if err != nil {
			storeError(w, err)
			return
		}
		resp.GGGroups = append(resp.GGGroups, discoverGroup{
			GGGroupId: g.ID,
			Cores:     []discoverCore{{ThingArn: s.thingARN(g.Core), Connectivity: eps}},
			CAs:       g.CAs,
		})
	}
	writeJSON(w, http.StatusOK, resp)
}

// storeError answers a store failure: 404 for what does not exist, 400
// for what the store refused.
func storeError(w http.ResponseWriter, err error) {
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with v1's error shape.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"message": msg})
}
