package api

import (
	"cmp"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

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
