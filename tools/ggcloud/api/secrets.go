package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// getDeploymentSecrets answers a core fetching a deployment's secrets:
// the envelope sealed to its SecretsManager key at deployment (see
// core/secrets), 404 when the deployment carries none. Only the
// deployment's core may fetch it, and its policies must allow
// GetDeployment on the deployment. The values are never in clear here.
func (s *Server) getDeploymentSecrets(w http.ResponseWriter, r *http.Request) {
	group, id, ok := pathIDs(w, r)
	if !ok {
		return
	}
	caller, ok := s.identify(w, r)
	if !ok || !s.allow(w, caller, actionGetDeployment, s.deploymentARN(group, id)) {
		return
	}
	d, err := s.Store.Deployment(group, id)
	if err != nil {
		storeError(w, err)
		return
	}
	if caller.Thing.Name != d.Core {
		s.log().Info("call refused", "thing", caller.Thing.Name, "action", actionGetDeployment, "group", group, "deployment", id,
			"reason", "secrets go to the deployment's core only")
		writeError(w, http.StatusForbidden, fmt.Sprintf("not authorized: the secrets of deployment %s go to its core %s only", id, d.Core))
		return
	}
	env, err := s.Store.SecretsEnvelope(group, id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		storeError(w, err)
		return
	}
	s.log().Info("deployment secrets fetched", "group", group, "deployment", id, "core", d.Core, "bytes", len(env))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(env)
}
