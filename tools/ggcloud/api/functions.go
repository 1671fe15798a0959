package api

import (
	"fmt"
	"net/http"
	"strconv"
)

// getDeploymentCode answers a core fetching a function's code archive
// that its deployment references by SHA-256. Only the deployment's core
// may fetch it, and its policies must allow GetDeployment on the
// deployment; the core checks size and hash itself.
func (s *Server) getDeploymentCode(w http.ResponseWriter, r *http.Request) {
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
		writeError(w, http.StatusForbidden, fmt.Sprintf("not authorized: the code of deployment %s goes to its core %s only", id, d.Core))
		return
	}
	sum := r.PathValue("sha256")
	code, err := s.Store.DeploymentCode(group, id, sum)
	if err != nil {
		storeError(w, err)
		return
	}
	s.log().Info("function code fetched", "group", group, "deployment", id, "core", d.Core, "sha256", sum, "bytes", len(code))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(code)))
	w.WriteHeader(http.StatusOK)
	w.Write(code)
}
