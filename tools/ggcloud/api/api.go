// Package api serves ggcloud's HTTPS control-plane API (docs/design.md
// "HTTPS API"). Every call is made with a client certificate; the
// certificate must be registered and within its validity, and the AWS IoT
// policies attached to it must allow the call's action on its resource,
// or the answer is 403 naming both.
//
// Served: the Discovery API (GET /greengrass/discover/thing/{thing}), GET
// and PUT /greengrass/things/{thing}/connectivityInfo, CreateCertificate
// (POST /greengrass/things/{thing}/certificate), and the deployment calls:
// GET /greengrass/things/{coreThing}/deployment, GetDeployment (GET
// /greengrass/groups/{groupId}/deployments/{deploymentId}) and
// UpdateCoreDeploymentStatus (POST
// /greengrass/groups/{groupId}/deployments/{deploymentId}/cores/{coreArn}).
package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

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
	mux.HandleFunc("GET /greengrass/things/{thing}/deployment", s.currentDeployment)
	mux.HandleFunc("GET /greengrass/groups/{group}/deployments/{deployment}", s.getDeployment)
	mux.HandleFunc("GET /greengrass/groups/{group}/deployments/{deployment}/secrets", s.getDeploymentSecrets)
	mux.HandleFunc("GET /greengrass/groups/{group}/deployments/{deployment}/code/{sha256}", s.getDeploymentCode)
	// {core...}: the core's ARN, URL-encoded as one segment (thing%2Fgw)
	// or with its slash left as is.
	mux.HandleFunc("POST /greengrass/groups/{group}/deployments/{deployment}/cores/{core...}", s.updateCoreDeploymentStatus)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no such call: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// thingARN is the ARN of a thing in this region and account.
func (s *Server) thingARN(thing string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", s.Region, s.Account, thing)
}

// deploymentARN is the resource of the deployment calls:
// arn:aws:greengrass:REGION:ACCOUNT:/greengrass/groups/G/deployments/D.
func (s *Server) deploymentARN(group, deployment string) string {
	return fmt.Sprintf("arn:aws:greengrass:%s:%s:/greengrass/groups/%s/deployments/%s", s.Region, s.Account, group, deployment)
}

// authorize identifies the caller by its client certificate and checks
// that its policies allow action on resource; it writes the refusal and
// returns false otherwise.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, action, resource string) bool {
	caller, ok := s.identify(w, r)
	return ok && s.allow(w, caller, action, resource)
}

// identify returns the registered thing behind the request's client
// certificate; it writes the refusal and returns false if there is none,
// or if the certificate is outside its validity.
func (s *Server) identify(w http.ResponseWriter, r *http.Request) (store.Caller, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, http.StatusUnauthorized, "a client certificate is required")
		return store.Caller{}, false
	}
	cert := r.TLS.PeerCertificates[0]
	id := pki.CertificateID(cert.Raw)
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		s.log().Info("call refused", "certificate", id, "reason", "certificate outside its validity")
		writeError(w, http.StatusForbidden, fmt.Sprintf("certificate %s is valid from %s to %s only",
			id, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339)))
		return store.Caller{}, false
	}
	caller, err := s.Store.CallerOf(id)
	if errors.Is(err, store.ErrNotFound) {
		s.log().Info("call refused", "certificate", id, "path", r.URL.Path, "reason", "certificate not registered")
		writeError(w, http.StatusForbidden, fmt.Sprintf("certificate %s is not registered", id))
		return caller, false
	}
	if err != nil {
		s.log().Error("call failed", "certificate", id, "error", err)
		writeError(w, http.StatusInternalServerError, "state store unavailable")
		return caller, false
	}
	return caller, true
}

// allow checks that the caller's policies allow action on resource; it
// writes the refusal and returns false otherwise.
func (s *Server) allow(w http.ResponseWriter, caller store.Caller, action, resource string) bool {
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
