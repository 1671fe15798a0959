package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/cloud"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/spool"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// upstream is the cloud side of the core: the spool and the bridge.
type upstream struct {
	spool  *spool.Spool
	bridge *cloud.Bridge
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
	if !samePublicKey(chain[0].PublicKey, key.Public()) {
		return nil, fmt.Errorf("crypto.principals.IoTCertificate: certificate %s does not match the key of privateKeyPath", certPath)
	}
	id := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		id.Certificate = append(id.Certificate, c.Raw)
	}
	return id, nil
}

// openUpstream opens the spool (<writeDirectory>/spool/cloud.db, sized by
// the group's GGCloudSpooler setting) and builds the bridge to
// coreThing.iotHost, verifying the server against roots (crypto.caPath);
// nil when iotHost is not set. deliver takes messages from the cloud.
func openUpstream(cfg *config.Config, g *config.Group, identity *tls.Certificate, roots *x509.CertPool,
	deliver func(string, []byte, byte) error, c *core) (*upstream, error) {
	if cfg.CoreThing.IotHost == "" {
		return nil, nil
	}
	maxBytes, err := g.SpoolMaxBytes()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.GroupPath(), err)
	}
	sp, err := spool.Open(spool.Options{Path: filepath.Join(cfg.WriteDirectory, "spool", "cloud.db"), MaxBytes: maxBytes, Log: c.log})
	if err != nil {
		return nil, fmt.Errorf("writeDirectory: %w", err)
	}
	b, err := cloud.New(cloud.Options{
		Host: cfg.CoreThing.IotHost, Port: cfg.CoreThing.IotMqttPort, ClientID: cfg.CoreThing.ThingName,
		KeepAlive:        uint16(cfg.CoreThing.KeepAlive),
		MaxRetryInterval: time.Duration(cfg.CoreThing.MQTTMaxConnectionRetryInterval) * time.Second,
		TLS: tlsconf.Client(roots, cfg.CoreThing.IotHost, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return identity, nil
		}),
		Spool:   sp,
		Deliver: deliver,
		Control: map[string]func([]byte){deploy.NotifyTopic(cfg.CoreThing.ThingName): func([]byte) {
			if c.deployer != nil {
				c.log.Info("deployment notification from the cloud")
				c.deployer.Notify()
			}
		}},
		Log: c.log,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	b.SetFilters(cloudFilters(g))
	st := sp.Stats()
	c.log.Info("cloud spool opened", "messages", st.Messages, "bytes", st.Bytes, "max_bytes", maxBytes)
	return &upstream{spool: sp, bridge: b}, nil
}

// cloudFilters are the Subjects of the subscriptions whose source is the
// cloud: what the core subscribes to upstream.
func cloudFilters(g *config.Group) []string {
	var fs []string
	for _, s := range g.Subscriptions {
		if s.Source == broker.CloudSource {
			fs = append(fs, s.Subject)
		}
	}
	return fs
}
