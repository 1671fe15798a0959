package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// Actions of the deployment calls.
const (
	actionGetDeployment              = "greengrass:GetDeployment"
	actionUpdateCoreDeploymentStatus = "greengrass:UpdateCoreDeploymentStatus"
)

// currentDeployment answers a core asking which deployment it should run:
// {"GroupId","DeploymentId"} of its group's current deployment. Only the
// core itself may ask, and its policies must allow GetDeployment on that
// deployment.
func (s *Server) currentDeployment(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	caller, ok := s.identify(w, r)
	if !ok {
		return
	}
	if caller.Thing.Name != thing {
		s.log().Info("call refused", "thing", caller.Thing.Name, "action", actionGetDeployment, "core", thing, "reason", "not the core")
		writeError(w, http.StatusForbidden, fmt.Sprintf("not authorized: %s of core %s: thing %s may not read the deployment of core %s, only the core itself",
			actionGetDeployment, thing, caller.Thing.Name, thing))
		return
	}
	d, err := s.Store.CurrentDeploymentOfCore(thing)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no deployment for core %s: %v", thing, err))
		return
	}
	if err != nil {
		storeError(w, err)
		return
	}
	if !s.allow(w, caller, actionGetDeployment, s.deploymentARN(d.GroupId, d.DeploymentId)) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"GroupId": d.GroupId, "DeploymentId": d.DeploymentId})
}

// pathIDs returns the group and deployment IDs of the path, or answers
// 404 for IDs that cannot exist (a group or deployment ID has no '/').
func pathIDs(w http.ResponseWriter, r *http.Request) (group, deployment string, ok bool) {
	group, deployment = r.PathValue("group"), r.PathValue("deployment")
	if strings.Contains(group, "/") || strings.Contains(deployment, "/") {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no deployment %q of group %q", deployment, group))
		return "", "", false
	}
	return group, deployment, true
}

// getDeployment answers GetDeployment: the deployment's group.json.
func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) {
	group, id, ok := pathIDs(w, r)
	if !ok || !s.authorize(w, r, actionGetDeployment, s.deploymentARN(group, id)) {
		return
	}
	d, err := s.Store.Deployment(group, id)
	if err != nil {
		storeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(d.Document)
}

// coreStatus is the body of UpdateCoreDeploymentStatus, in v1's shape.
type coreStatus struct {
	Status       string `json:"Status"`
	ErrorMessage string `json:"ErrorMessage"`
}

// updateCoreDeploymentStatus records what the core reports about a
// deployment. The resource is the deployment's ARN, "/cores/" and the
// core's thing ARN URL-encoded (url.QueryEscape), as v1's minimal
// policy writes it. Only the deployment's core may report.
func (s *Server) updateCoreDeploymentStatus(w http.ResponseWriter, r *http.Request) {
	group, id, ok := pathIDs(w, r)
	if !ok {
		return
	}
	coreARN := r.PathValue("core")
	resource := s.deploymentARN(group, id) + "/cores/" + url.QueryEscape(coreARN)
	caller, ok := s.identify(w, r)
	if !ok || !s.allow(w, caller, actionUpdateCoreDeploymentStatus, resource) {
		return
	}
	core, err := config.ThingName(coreARN)
	if err != nil || coreARN != s.thingARN(core) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("core %q: want the URL-encoded thing ARN of the group's core, %s",
			coreARN, url.QueryEscape(s.thingARN("NAME"))))
		return
	}
	if caller.Thing.Name != core {
		s.log().Info("call refused", "thing", caller.Thing.Name, "action", actionUpdateCoreDeploymentStatus, "core", core, "reason", "not the core")
		writeError(w, http.StatusForbidden, fmt.Sprintf("not authorized: %s on %s: thing %s may not report the deployment status of core %s, only the core itself",
			actionUpdateCoreDeploymentStatus, resource, caller.Thing.Name, core))
		return
	}
	var body coreStatus
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("body: %v; want {\"Status\":\"%s\",\"ErrorMessage\":\"...\"}",
			err, strings.Join(store.Statuses(), "|")))
		return
	}
	if !slices.Contains(store.Statuses(), body.Status) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Status %q: want one of %s", body.Status, strings.Join(store.Statuses(), ", ")))
		return
	}
	st, err := s.Store.SetCoreStatus(group, id, core, body.Status, body.ErrorMessage)
	if err != nil {
		storeError(w, err)
		return
	}
	s.log().Info("deployment status", "group", group, "deployment", id, "core", core, "status", st.Status, "error_message", st.ErrorMessage)
	writeJSON(w, http.StatusOK, st)
}
