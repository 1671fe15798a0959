// Package api serves ggcloud's HTTPS control-plane API (DESIGN.md
// "Control plane"). Every call is made with a client certificate; the
// certificate must be registered, and the AWS IoT policies attached to it
// must allow the call's action on its resource, or the answer is 403
// naming both.
//
// Served so far: the Discovery API (GET /greengrass/discover/thing/{thing}),
// GET and PUT /greengrass/things/{thing}/connectivityInfo, and
// CreateCertificate (POST /greengrass/things/{thing}/certificate).
package api

import (
	"cmp"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
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
	// MinValidity is the shortest server-certificate validity a group may
	// ask for: 7 days (v1's floor) when zero. Tests of rotation lower it.
	MinValidity time.Duration
}

// maxValidity is v1's ceiling on the MQTT server certificate's validity.
const maxValidity = 30 * 24 * time.Hour

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /greengrass/discover/thing/{thing}", s.discover)
	mux.HandleFunc("GET /greengrass/things/{thing}/connectivityInfo", s.getConnectivity)
	mux.HandleFunc("PUT /greengrass/things/{thing}/connectivityInfo", s.putConnectivity)
	mux.HandleFunc("POST /greengrass/things/{thing}/certificate", s.createCertificate)
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

// createCertificate signs the core's CSR with its group's CA
// (SHA256-RSA), valid for the group's CertificateExpiryMs, for the CSR's
// names and the core's connectivity addresses.
func (s *Server) createCertificate(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	if !s.authorize(w, r, "greengrass:CreateCertificate", s.thingARN(thing)) {
		return
	}
	var body struct{ Csr string }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v; want {\"Csr\": PEM}", err))
		return
	}
	block, _ := pem.Decode([]byte(body.Csr))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		writeError(w, http.StatusBadRequest, "Csr: want a PEM CERTIFICATE REQUEST")
		return
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Csr: %v", err))
		return
	}
	g, err := s.Store.GroupOfCore(thing)
	if err != nil {
		storeError(w, err)
		return
	}
	validity := time.Duration(g.CertificateExpiryMs) * time.Millisecond
	minValidity := cmp.Or(s.MinValidity, 7*24*time.Hour)
	if validity < minValidity || validity > maxValidity {
		writeError(w, http.StatusConflict, fmt.Sprintf("group %s: CertificateExpiryInMilliseconds %d is outside %v to %v", g.ID, g.CertificateExpiryMs, minValidity, maxValidity))
		return
	}
	ca, err := groupCA(g)
	if err != nil {
		s.log().Error("group CA unusable", "group", g.ID, "error", err)
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("group %s: its CA cannot sign", g.ID))
		return
	}
	eps, err := s.Store.Connectivity(thing)
	if err != nil {
		storeError(w, err)
		return
	}
	for _, e := range eps {
		if ip := net.ParseIP(e.HostAddress); ip != nil {
			if !slices.ContainsFunc(csr.IPAddresses, ip.Equal) {
				csr.IPAddresses = append(csr.IPAddresses, ip)
			}
		} else if !slices.Contains(csr.DNSNames, e.HostAddress) {
			csr.DNSNames = append(csr.DNSNames, e.HostAddress)
		}
	}
	cert, err := ca.SignCSR(csr, pki.ServerAuth, time.Now().Add(validity))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log().Info("MQTT server certificate issued", "core", thing, "group", g.ID, "not_after", cert.NotAfter)
	writeJSON(w, http.StatusOK, map[string]string{
		"CertificatePem": string(pki.EncodeCertificate(cert)),
		"GroupCA":        g.CAs[0],
		"ExpiresAt":      cert.NotAfter.UTC().Format(time.RFC3339),
	})
}

// groupCA is the group's signing CA: its first CA certificate and its key.
func groupCA(g store.Group) (*pki.CA, error) {
	certs, err := pki.ParseCertificates([]byte(g.CAs[0]))
	if err != nil {
		return nil, err
	}
	key, err := keys.ParsePEM([]byte(g.CAKey))
	if err != nil {
		return nil, err
	}
	return &pki.CA{Cert: certs[0], Key: key}, nil
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
