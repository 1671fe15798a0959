package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// principals are the core's keys, one per principal of config.json's
// crypto.principals; a key is nil when its principal names none.
type principals struct {
	// iot is IoTCertificate's: the core's TLS client identity towards
	// the cloud and the control plane.
	iot crypto.Signer
	// mqttServer is MQTTServerCertificate's: the local broker's server
	// key. Nil means the device certificate manager makes server keys.
	mqttServer crypto.Signer
	// secrets is SecretsManager's; nil means, as in v1, that the IoT key
	// stands in for it.
	secrets crypto.Signer
}

// openPrincipals opens every configured key once, so that a missing, weak
// or wrong-type key, a wrong PIN or an unreachable TPM stops the core at
// start with the principal's JSON path. The keys open side by side: what
// each costs besides its store's commands (reading and parsing the file,
// checking the public key) overlaps, and a store serialises its own
// commands. Errors come in the principals' order.
func openPrincipals(cfg *config.Config, store *keys.Store, log *slog.Logger, tr *startupTrace) (principals, error) {
	p := cfg.Crypto.Principals
	var ps principals
	wanted := []struct {
		name, ref string
		key       *crypto.Signer
	}{
		{"IoTCertificate", p.IoTCertificate.PrivateKey, &ps.iot},
		{"MQTTServerCertificate", p.MQTTServerCertificate.PrivateKey, &ps.mqttServer},
		{"SecretsManager", p.SecretsManager.PrivateKey, &ps.secrets},
	}
	opened := make([]struct {
		signer crypto.Signer
		err    error
	}, len(wanted))
	var wg sync.WaitGroup
	for i, k := range wanted {
		if k.ref == "" {
			continue
		}
		wg.Go(func() {
			signer, err := store.Open(k.ref)
			if err == nil {
				err = keys.CheckKey(k.name, signer)
			}
			opened[i].signer, opened[i].err = signer, err
			tr.step("key opened", "principal", k.name)
		})
	}
	var errs []error
	if _, err := pki.ReadCertificates(p.IoTCertificate.CertificatePath); err != nil {
		errs = append(errs, fmt.Errorf("crypto.principals.IoTCertificate.certificatePath: %w", err))
	}
	wg.Wait()
	var keyErrs []error
	for i, k := range wanted {
		if k.ref == "" {
			continue
		}
		if err := opened[i].err; err != nil {
			keyErrs = append(keyErrs, fmt.Errorf("crypto.principals.%s.privateKeyPath: %w", k.name, err))
			continue
		}
		signer := opened[i].signer
		log.Info("key opened", "principal", k.name, "store", keys.StoreOf(signer), "type", keys.Describe(signer.Public()))
		*k.key = signer
	}
	return ps, errors.Join(append(keyErrs, errs...)...)
}

// warnSecretsFallback says when SecretsManager is unset and, as in v1,
// falls back to the IoT key, but that key cannot wrap secrets (not RSA).
func warnSecretsFallback(cfg *config.Config, ps principals, log *slog.Logger) {
	if cfg.Crypto.Principals.SecretsManager.PrivateKey != "" || ps.iot == nil {
		return
	}
	if err := keys.CheckKey("SecretsManager", ps.iot); err != nil {
		log.Warn("crypto.principals.SecretsManager is not set and the IoTCertificate key cannot stand in for it; set an RSA key before deploying secrets",
			"reason", err)
	}
}

// loadCAPool reads crypto.caPath: the CAs device certificates (and the
// cloud's and control plane's server certificates) must chain to.
func loadCAPool(path string) (*x509.CertPool, error) {
	certs, err := pki.ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		if !c.IsCA {
			return nil, fmt.Errorf("%s: certificate %q is not a CA", path, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// loadServerCertificate pairs the served MQTT server certificate with the
// MQTTServerCertificate key (opened by openPrincipals). An expired
// certificate is served, and logged: refusing to start would not help the
// devices, and the user renews it.
func loadServerCertificate(cfg *config.Config, key crypto.Signer, log *slog.Logger) (*tls.Certificate, error) {
	certPath := cfg.ServerCertPath()
	chain, err := pki.ReadCertificates(certPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("MQTT server certificate %s is missing (ggprov init writes it): %w", certPath, err)
		}
		return nil, fmt.Errorf("MQTT server certificate: %w", err)
	}
	tc, err := tlsconf.Certificate(key, chain)
	if err != nil {
		return nil, fmt.Errorf("crypto.principals.MQTTServerCertificate.privateKeyPath: MQTT server certificate %s: %w", certPath, err)
	}
	if now := time.Now(); now.After(tc.Leaf.NotAfter) {
		log.Error("MQTT server certificate has expired: devices will refuse it until it is renewed",
			"path", certPath, "not_after", tc.Leaf.NotAfter)
	}
	return tc, nil
}

// loadIdentity pairs the IoTCertificate key with its certificate: the
// core's TLS client identity towards the cloud and the control plane.
func loadIdentity(cfg *config.Config, key crypto.Signer) (*tls.Certificate, error) {
	if key == nil {
		return nil, errors.New("crypto.principals.IoTCertificate.privateKeyPath: not set; ggcore needs it to reach the cloud (coreThing.iotHost) and the control plane (coreThing.ggHost)")
	}
	certPath := cfg.Crypto.Principals.IoTCertificate.CertificatePath
	chain, err := pki.ReadCertificates(certPath)
	if err != nil {
		return nil, fmt.Errorf("crypto.principals.IoTCertificate.certificatePath: %w", err)
	}
	id, err := tlsconf.Certificate(key, chain)
	if err != nil {
		return nil, fmt.Errorf("crypto.principals.IoTCertificate: certificate %s and privateKeyPath: %w", certPath, err)
	}
	return id, nil
}
