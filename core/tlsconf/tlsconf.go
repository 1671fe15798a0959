// Package tlsconf builds the TLS configurations ggcore serves and dials
// with: the local MQTT server's two cipher profiles (strict and compat,
// from the v1 security model's cipher table) and the upstream client's;
// and the certificates they present (Certificate pairs a key with its
// certificate chain).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
)

// Profile names a server cipher profile ("ggcore.tlsProfile" in config.json).
type Profile string

const (
	// Strict is the default: TLS 1.3, and TLS 1.2 with ECDHE key exchange
	// and AES-GCM only (the GCM rows of the v1 cipher table).
	Strict Profile = "strict"
	// Compat serves the whole v1 cipher table, TLS 1.0 to 1.2 with CBC and
	// RSA key exchange, for legacy devices. It is opt-in and logged as a
	// warning at start.
	Compat Profile = "compat"
)

// ParseProfile maps a config value to a Profile; "" means Strict.
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case "", Strict:
		return Strict, nil
	case Compat:
		return Compat, nil
	}
	return "", fmt.Errorf("tlsconf: unknown profile %q: want %q or %q", s, Strict, Compat)
}

// strictSuites are the TLS 1.2 suites of the v1 table with forward secrecy
// and AEAD. TLS 1.3 suites are not configurable in crypto/tls; all of them
// are AEAD with ephemeral key exchange.
var strictSuites = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
}

// compatForwardSecret are the v1 table's suites that a hardware-backed key
// can serve (the rows v1's cipher table marks "HSM Support: Supported").
var compatForwardSecret = []uint16{
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA,
}

// compatRSAKeyExchange are the v1 table's RSA-key-exchange suites: the
// server decrypts the premaster secret, which hardware-backed keys in v1
// did not support and which gives no forward secrecy.
var compatRSAKeyExchange = []uint16{
	tls.TLS_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_RSA_WITH_AES_128_CBC_SHA,
	tls.TLS_RSA_WITH_AES_256_CBC_SHA,
}

// ServerOptions are the inputs of Server.
type ServerOptions struct {
	// Profile selects the cipher profile.
	Profile Profile
	// ClientCAs verifies device certificates (crypto.caPath).
	ClientCAs *x509.CertPool
	// GetCertificate returns the current MQTT server certificate; the DCM
	// swaps it on rotation without restarting the listener.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// HardwareKey says the server key lives in a TPM or token: the compat
	// profile then leaves out RSA key exchange.
	HardwareKey bool
}

// Server returns the local MQTT server's TLS configuration: client
// certificates required and verified, and the profile's versions and
// suites.
func Server(o ServerOptions) (*tls.Config, error) {
	if o.ClientCAs == nil {
		return nil, fmt.Errorf("tlsconf: server: no client CA pool")
	}
	if o.GetCertificate == nil {
		return nil, fmt.Errorf("tlsconf: server: no certificate source")
	}
	cfg := &tls.Config{
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      o.ClientCAs,
		GetCertificate: o.GetCertificate,
	}
	switch o.Profile {
	case Strict, "":
		cfg.MinVersion = tls.VersionTLS12
		cfg.CipherSuites = strictSuites
	case Compat:
		cfg.MinVersion = tls.VersionTLS10
		cfg.CipherSuites = append([]uint16(nil), compatForwardSecret...)
		if !o.HardwareKey {
			cfg.CipherSuites = append(cfg.CipherSuites, compatRSAKeyExchange...)
		}
	default:
		return nil, fmt.Errorf("tlsconf: server: unknown profile %q", o.Profile)
	}
	return cfg, nil
}

// Client returns the upstream client's TLS configuration: TLS 1.2 or
// later with ECDHE key exchange only, verifying the server against roots.
func Client(roots *x509.CertPool, serverName string, cert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		RootCAs:              roots,
		ServerName:           serverName,
		GetClientCertificate: cert,
	}
}
