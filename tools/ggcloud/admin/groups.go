package admin

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

func (h *handler) createGroup(r *http.Request) (any, error) {
	var in NewGroup
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	certs, err := pki.ParseCertificates([]byte(in.CACertificatePem))
	if err != nil {
		return nil, badRequest{fmt.Errorf("CACertificatePem: %w", err)}
	}
	var cas []string
	for _, c := range certs {
		cas = append(cas, string(pki.EncodeCertificate(c)))
	}
	g := store.Group{
		ID: in.Id, Core: in.Core, CoreCert: in.CoreCertificateId, CAs: cas, CAKey: in.CAKeyPem,
		CertificateExpiryMs: in.CertificateExpiryMs,
	}
	if g.CertificateExpiryMs == 0 {
		g.CertificateExpiryMs = config.DefaultCertificateExpiryMs
	}
	if err := h.st.CreateGroup(g); err != nil {
		return nil, err
	}
	return h.group(in.Id)
}

// group is the view of a stored group.
func (h *handler) group(id string) (Group, error) {
	g, err := h.st.Group(id)
	if err != nil {
		return Group{}, err
	}
	return h.view(g)
}

func (h *handler) view(g store.Group) (Group, error) {
	out := Group{
		Id:                  g.ID,
		Core:                Member{Thing: g.Core, CertificateId: g.CoreCert},
		Devices:             []Member{},
		Subscriptions:       g.Subscriptions,
		Resources:           g.Resources,
		CAs:                 g.CAs,
		CertificateExpiryMs: g.CertificateExpiryMs,
	}
	for _, d := range g.Devices {
		out.Devices = append(out.Devices, Member{Thing: d, CertificateId: g.DeviceCerts[d]})
	}
	if out.Subscriptions == nil {
		out.Subscriptions = []store.Subscription{}
	}
	d, err := h.st.CurrentDeployment(g.ID)
	switch {
	case err == nil:
		out.CurrentDeploymentId = d.DeploymentId
	case !errors.Is(err, store.ErrNotFound):
		return out, err
	}
	return out, nil
}

func (h *handler) listGroups(*http.Request) (any, error) {
	groups, err := h.st.Groups()
	if err != nil {
		return nil, err
	}
	out := []Group{}
	for _, g := range groups {
		v, err := h.view(g)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (h *handler) getGroup(r *http.Request) (any, error) {
	return h.group(r.PathValue("group"))
}

func (h *handler) addDevice(r *http.Request) (any, error) {
	var in Member
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	id := r.PathValue("group")
	if err := h.st.AddDevice(id, in.Thing, in.CertificateId); err != nil {
		return nil, err
	}
	return h.group(id)
}

func (h *handler) removeDevice(r *http.Request) (any, error) {
	id := r.PathValue("group")
	if err := h.st.RemoveDevice(id, r.PathValue("thing")); err != nil {
		return nil, err
	}
	return h.group(id)
}

func (h *handler) removeSubscription(r *http.Request) (any, error) {
	id := r.PathValue("group")
	if err := h.st.RemoveSubscription(id, r.PathValue("id")); err != nil {
		return nil, err
	}
	return h.group(id)
}

func (h *handler) addSubscription(r *http.Request) (any, error) {
	var in store.Subscription
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	return h.st.AddSubscription(r.PathValue("group"), in)
}

func (h *handler) deploy(r *http.Request) (any, error) {
	group := r.PathValue("group")
	deploy := h.st.Deploy
	if fw := r.URL.Query().Get("firmware"); fw != "" {
		deploy = func(group string) (string, error) { return h.st.DeployFirmware(group, fw) }
	}
	id, err := deploy(group)
	if err != nil {
		return nil, err
	}
	if h.deployed != nil {
		if g, err := h.st.Group(group); err == nil {
			h.deployed(group, g.Core, id)
		}
	}
	return h.deployment(group, id)
}

// deployment is the view of a deployment with its statuses.
func (h *handler) deployment(group, id string) (Deployment, error) {
	d, err := h.st.Deployment(group, id)
	if err != nil {
		return Deployment{}, err
	}
	statuses, err := h.st.DeploymentStatus(group, id)
	if err != nil {
		return Deployment{}, err
	}
	cur, err := h.st.CurrentDeployment(group)
	if err != nil {
		return Deployment{}, err
	}
	return Deployment{
		GroupId: d.GroupId, DeploymentId: d.DeploymentId, GroupVersionId: d.GroupVersionId, CreatedAt: d.CreatedAt,
		Current: cur.DeploymentId == d.DeploymentId, Statuses: statuses,
	}, nil
}

func (h *handler) listDeployments(r *http.Request) (any, error) {
	group := r.PathValue("group")
	list, err := h.st.Deployments(group)
	if err != nil {
		return nil, err
	}
	out := []Deployment{}
	for _, d := range list {
		v, err := h.deployment(group, d.DeploymentId)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (h *handler) getDeployment(r *http.Request) (any, error) {
	return h.deployment(r.PathValue("group"), r.PathValue("deployment"))
}
