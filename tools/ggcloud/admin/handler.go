// Package admin is ggcloud's administration API: HTTP and JSON over a
// unix socket in the data directory (its file permissions are the
// authentication; it is never served on TCP), and a Go client for it.
//
// The client talks to a running `ggcloud serve` through the socket; with
// no server there it opens the store itself and serves the same handler
// in-process, so every change takes the same code path.
package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// maxBody bounds a request body.
const maxBody = 1 << 20

// handler serves the admin API over a store.
type handler struct {
	st  *store.Store
	log *slog.Logger
	// deployed runs after each deployment is made; nil for none.
	deployed func(group, core, deployment string)
}

// Options configure NewHandler.
type Options struct {
	Log *slog.Logger
	// Deployed runs after each deployment is made (ggcloud serve
	// notifies the core over MQTT).
	Deployed func(group, core, deployment string)
}

// Handler returns the admin API's routes over st. Changes are logged to
// log (nil: not logged).
func Handler(st *store.Store, log *slog.Logger) http.Handler {
	return NewHandler(st, Options{Log: log})
}

// NewHandler is Handler with options.
func NewHandler(st *store.Store, o Options) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{st: st, log: log, deployed: o.Deployed}
	mux := http.NewServeMux()
	for _, r := range []struct {
		pattern string
		fn      func(*http.Request) (any, error)
	}{
		{"GET /v1/identity", h.identity},
		{"PUT /v1/identity", h.useIdentity},
		{"POST /v1/things", h.createThing},
		{"GET /v1/things", h.listThings},
		{"GET /v1/things/{thing}", h.getThing},
		{"POST /v1/things/{thing}/certificates", h.registerCertificate},
		{"PUT /v1/things/{thing}/connectivity", h.setConnectivity},
		{"GET /v1/things/{thing}/connectivity", h.getConnectivity},
		{"PUT /v1/policies/{policy}", h.putPolicy},
		{"POST /v1/policies/{policy}/attachments", h.attachPolicy},
		{"POST /v1/groups", h.createGroup},
		{"GET /v1/groups", h.listGroups},
		{"GET /v1/groups/{group}", h.getGroup},
		{"POST /v1/groups/{group}/devices", h.addDevice},
		{"DELETE /v1/groups/{group}/devices/{thing}", h.removeDevice},
		{"DELETE /v1/groups/{group}/subscriptions/{id}", h.removeSubscription},
		{"POST /v1/groups/{group}/subscriptions", h.addSubscription},
		{"POST /v1/groups/{group}/deployments", h.deploy},
		{"GET /v1/groups/{group}/deployments", h.listDeployments},
		{"GET /v1/groups/{group}/deployments/{deployment}", h.getDeployment},
		{"POST /v1/secrets", h.createSecret},
		{"GET /v1/secrets", h.listSecrets},
		{"POST /v1/secret-values", h.putSecretValue},
		{"PUT /v1/things/{thing}/secrets-key", h.setSecretsKey},
		{"POST /v1/groups/{group}/resources", h.addResource},
		{"DELETE /v1/groups/{group}/resources/{id}", h.removeResource},
		{"PUT /v1/functions/code", h.putFunctionCode},
		{"GET /v1/functions/code", h.listFunctionCode},
		{"POST /v1/groups/{group}/functions", h.addFunction},
		{"PUT /v1/firmware", h.putFirmware},
		{"GET /v1/firmware", h.listFirmware},
	} {
		mux.HandleFunc(r.pattern, h.serve(r.fn))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Message: fmt.Sprintf("no admin call %s %s", r.Method, r.URL.Path), Code: "NotFound"})
	})
	return mux
}

// serve adapts a call: its result is the 200 answer, its error the
// refusal.
func (h *handler) serve(fn func(*http.Request) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := fn(r)
		if err != nil {
			code, kind := classify(err)
			if code == http.StatusInternalServerError {
				h.log.Error("admin call failed", "method", r.Method, "path", r.URL.Path, "error", err)
			}
			writeJSON(w, code, errorBody{Message: err.Error(), Code: kind})
			return
		}
		if r.Method != http.MethodGet {
			h.log.Info("admin change", "method", r.Method, "path", r.URL.Path)
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// badRequest is a body that could not be read.
type badRequest struct{ err error }

func (e badRequest) Error() string { return e.err.Error() }

// classify maps an error to an HTTP status and an error code.
func classify(err error) (int, string) {
	var bad badRequest
	switch {
	case errors.As(err, &bad):
		return http.StatusBadRequest, "Invalid"
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, "NotFound"
	case errors.Is(err, store.ErrExists):
		return http.StatusConflict, "Exists"
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, "Conflict"
	}
	return http.StatusBadRequest, "Invalid"
}

// decode reads a JSON body into v, refusing unknown fields.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest{fmt.Errorf("body: %w", err)}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (h *handler) identity(*http.Request) (any, error) {
	id, fixed, err := h.st.Identity()
	return Identity{Region: id.Region, Account: id.Account, Fixed: fixed}, err
}

// useIdentity fixes the region and account (empty: as fixed, else the
// default), or refuses ones other than those fixed.
func (h *handler) useIdentity(r *http.Request) (any, error) {
	var in Identity
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	id, err := h.st.UseIdentity(store.Identity{Region: in.Region, Account: in.Account})
	return Identity{Region: id.Region, Account: id.Account, Fixed: err == nil}, err
}

func (h *handler) arn(thing string) (string, error) {
	id, _, err := h.st.Identity()
	return id.ThingARN(thing), err
}

func (h *handler) createThing(r *http.Request) (any, error) {
	var in Thing
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	arn, err := h.arn(in.Name)
	if err != nil {
		return nil, err
	}
	err = h.st.CreateThing(store.Thing{Name: in.Name, ARN: arn})
	switch {
	case errors.Is(err, store.ErrExists):
		return Thing{Name: in.Name, Arn: arn}, nil
	case err != nil:
		return nil, err
	}
	return Thing{Name: in.Name, Arn: arn, Created: true}, nil
}

func (h *handler) listThings(*http.Request) (any, error) {
	things, err := h.st.Things()
	if err != nil {
		return nil, err
	}
	id, _, err := h.st.Identity()
	if err != nil {
		return nil, err
	}
	out := []Thing{}
	for _, t := range things {
		out = append(out, Thing{Name: t.Name, Arn: id.ThingARN(t.Name)})
	}
	return out, nil
}

func (h *handler) getThing(r *http.Request) (any, error) {
	name := r.PathValue("thing")
	certs, err := h.st.CertificatesOf(name)
	if err != nil {
		return nil, err
	}
	arn, err := h.arn(name)
	return Thing{Name: name, Arn: arn, Certificates: certs}, err
}

// registerCertificate records a PEM certificate for a thing and answers
// its ID.
func (h *handler) registerCertificate(r *http.Request) (any, error) {
	var in struct{ CertificatePem string }
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates([]byte(in.CertificatePem))
	if err != nil {
		return nil, badRequest{fmt.Errorf("CertificatePem: %w", err)}
	}
	if len(certs) != 1 {
		return nil, badRequest{fmt.Errorf("CertificatePem: %d certificates; want the thing's one certificate", len(certs))}
	}
	id := pki.CertificateID(certs[0].Raw)
	err = h.st.RegisterCertificate(store.Certificate{ID: id, PEM: string(pki.EncodeCertificate(certs[0])), Thing: r.PathValue("thing")})
	return map[string]string{"CertificateId": id}, err
}

func (h *handler) setConnectivity(r *http.Request) (any, error) {
	var in Connectivity
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return in, h.st.SetConnectivity(r.PathValue("thing"), in.ConnectivityInfo)
}

func (h *handler) getConnectivity(r *http.Request) (any, error) {
	eps, err := h.st.Connectivity(r.PathValue("thing"))
	return Connectivity{ConnectivityInfo: eps}, err
}

// putPolicy stores the body, a policy document, under the path's name.
func (h *handler) putPolicy(r *http.Request) (any, error) {
	doc, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		return nil, badRequest{fmt.Errorf("body: %w", err)}
	}
	name := r.PathValue("policy")
	return map[string]string{"PolicyName": name}, h.st.PutPolicy(name, doc)
}

func (h *handler) attachPolicy(r *http.Request) (any, error) {
	var in struct{ CertificateId string }
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	name := r.PathValue("policy")
	return map[string]string{"PolicyName": name, "CertificateId": in.CertificateId}, h.st.AttachPolicy(name, in.CertificateId)
}
