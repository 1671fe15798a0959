package api

import (
	"net/http"

	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

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
	groups, err := s.Store.Discover(thing)
	if err != nil {
		storeError(w, err)
		return
	}
	resp := discoverResponse{GGGroups: []discoverGroup{}}
	for _, g := range groups {
		resp.GGGroups = append(resp.GGGroups, discoverGroup{
			GGGroupId: g.Group.ID,
			Cores:     []discoverCore{{ThingArn: s.thingARN(g.Group.Core), Connectivity: g.Connectivity}},
			CAs:       g.Group.CAs,
		})
	}
	writeJSON(w, http.StatusOK, resp)
}
