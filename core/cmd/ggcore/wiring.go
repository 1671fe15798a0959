package main

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// core is the running ggcore: what start wired together.
type core struct {
	log    *slog.Logger
	cfg    *config.Config
	keys   *keys.Store
	broker *broker.Broker

	profile       tlsconf.Profile
	groupID       string
	devices       int
	subscriptions int
}

// start reads and checks everything before it binds anything: a bad
// config, key, certificate or group stops the core with an error that
// names the JSON path or file, and nothing is changed on disk.
func start(configPath string, log *slog.Logger) (_ *core, err error) {
	cfg, err := config.LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	store := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device, PKCS11: cfg.Crypto.PKCS11})
	defer func() {
		if err != nil {
			store.Close()
		}
	}()
	for _, p := range cfg.Ignored {
		log.Info("config field not used by ggcore", "path", p)
	}
	profile, err := tlsconf.ParseProfile(cfg.GGCore.TLSProfile)
	if err != nil {
		return nil, fmt.Errorf("ggcore.tlsProfile: %w", err)
	}
	if profile == tlsconf.Compat {
		log.Warn("tlsProfile compat: serving TLS 1.0/1.1, CBC and RSA key exchange for legacy devices; use strict unless a device needs it")
	}
	signers, err := openPrincipals(cfg, store, log)
	if err != nil {
		return nil, err
	}
	warnSecretsFallback(cfg, signers, log)
	clientCAs, err := loadCAPool(cfg.Crypto.CAPath)
	if err != nil {
		return nil, fmt.Errorf("crypto.caPath: %w", err)
	}
	serverCert, err := loadServerCertificate(cfg, signers[mqttServer], log)
	if err != nil {
		return nil, err
	}
	var current atomic.Pointer[tls.Certificate]
	current.Store(serverCert)
	tlsCfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile:     profile,
		ClientCAs:   clientCAs,
		HardwareKey: keys.IsHardware(signers[mqttServer]),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return current.Load(), nil
		},
	})
	if err != nil {
		return nil, err
	}
	g, bg, err := loadGroup(cfg)
	if err != nil {
		return nil, err
	}
	logUnavailableTargets(log, g)

	addr := net.JoinHostPort(cfg.GGCore.LocalMQTTBind, strconv.Itoa(cfg.CoreThing.GGMqttPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("coreThing.ggMqttPort: listen on %s: %w", addr, err)
	}
	b, err := broker.New(broker.Options{Listener: ln, TLS: tlsCfg, Logger: log}, bg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := b.Start(); err != nil {
		ln.Close()
		return nil, err
	}
	return &core{
		log: log, cfg: cfg, keys: store, broker: b, profile: profile,
		groupID: g.GroupId, devices: len(g.Devices), subscriptions: len(g.Subscriptions),
	}, nil
}

// reloadGroup re-reads group.json; a bad group is refused and the running
// table kept.
func (c *core) reloadGroup() {
	g, bg, err := loadGroup(c.cfg)
	if err == nil {
		err = c.broker.SetGroup(bg)
	}
	if err != nil {
		c.log.Error("group reload refused; keeping the running group", "path", c.cfg.GroupPath(), "error", err)
		return
	}
	logUnavailableTargets(c.log, g)
	c.groupID, c.devices, c.subscriptions = g.GroupId, len(g.Devices), len(g.Subscriptions)
	c.log.Info("group reloaded", "group", g.GroupId, "version", g.GroupVersionId,
		"devices", len(g.Devices), "subscriptions", len(g.Subscriptions))
}

// loadGroup reads group.json and builds what the broker enforces.
func loadGroup(cfg *config.Config) (*config.Group, broker.Group, error) {
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		return nil, broker.Group{}, err
	}
	if core := g.Cores[0]; core.ThingArn != cfg.CoreThing.ThingArn {
		return nil, broker.Group{}, fmt.Errorf("%s: Cores[0].ThingArn %q is not this core (coreThing.thingArn %q)",
			cfg.GroupPath(), core.ThingArn, cfg.CoreThing.ThingArn)
	}
	subs := make([]router.Subscription, len(g.Subscriptions))
	for i, s := range g.Subscriptions {
		subs[i] = router.Subscription{ID: s.Id, Source: s.Source, Subject: s.Subject, Target: s.Target}
	}
	table, err := router.New(subs)
	if err != nil {
		return nil, broker.Group{}, fmt.Errorf("%s: %w", cfg.GroupPath(), err)
	}
	bg := broker.Group{ID: g.GroupId, Table: table, Devices: make([]broker.Thing, len(g.Devices))}
	for i, d := range g.Devices {
		bg.Devices[i] = broker.Thing{Name: d.Name(), ARN: d.ThingArn, CertificateID: d.CertificateID()}
	}
	return g, bg, nil
}

// logUnavailableTargets names subscriptions whose source or target does
// not exist in this core yet; they are valid and route nothing.
func logUnavailableTargets(log *slog.Logger, g *config.Group) {
	for _, s := range g.Subscriptions {
		for _, end := range []string{s.Source, s.Target} {
			switch {
			case end == "cloud" || end == "GGShadowService":
				log.Warn("subscription endpoint not available in this core yet; it routes nothing",
					"subscription", s.Id, "endpoint", end)
			case isFunctionARN(end):
				log.Warn("Lambda functions are not supported by ggcore; subscription routes nothing",
					"subscription", s.Id, "endpoint", end)
			}
		}
	}
}

// isFunctionARN reports a Lambda function ARN, in any partition.
func isFunctionARN(s string) bool {
	return strings.HasPrefix(s, "arn:") && strings.Contains(s, ":lambda:")
}

// Principal names, as config.json's crypto.principals spells them.
const (
	iotClient  = "IoTCertificate"
	mqttServer = "MQTTServerCertificate"
	secrets    = "SecretsManager"
)

// openPrincipals opens every configured key once, so that a missing, weak
// or wrong-type key, a wrong PIN or an unreachable TPM stops the core at
// start with the principal's JSON path. It returns the signers by
// principal name.
func openPrincipals(cfg *config.Config, store *keys.Store, log *slog.Logger) (map[string]crypto.Signer, error) {
	p := cfg.Crypto.Principals
	signers := make(map[string]crypto.Signer, 3)
	var errs []error
	for _, k := range []struct{ name, ref string }{
		{iotClient, p.IoTCertificate.PrivateKey},
		{mqttServer, p.MQTTServerCertificate.PrivateKey},
		{secrets, p.SecretsManager.PrivateKey},
	} {
		if k.ref == "" {
			continue
		}
		signer, err := store.Open(k.ref)
		if err == nil {
			err = keys.CheckKey(k.name, signer)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("crypto.principals.%s.privateKeyPath: %w", k.name, err))
			continue
		}
		log.Info("key opened", "principal", k.name, "store", keys.StoreOf(signer), "type", keys.Describe(signer.Public()))
		signers[k.name] = signer
	}
	if _, err := pki.ReadCertificates(p.IoTCertificate.CertificatePath); err != nil {
		errs = append(errs, fmt.Errorf("crypto.principals.IoTCertificate.certificatePath: %w", err))
	}
	return signers, errors.Join(errs...)
}

// warnSecretsFallback says when SecretsManager is unset and, as in v1,
// falls back to the IoT key, but that key cannot wrap secrets (not RSA).
func warnSecretsFallback(cfg *config.Config, signers map[string]crypto.Signer, log *slog.Logger) {
	iot, ok := signers[iotClient]
	if cfg.Crypto.Principals.SecretsManager.PrivateKey != "" || !ok {
		return
	}
	if err := keys.CheckKey(secrets, iot); err != nil {
		log.Warn("crypto.principals.SecretsManager is not set and the IoTCertificate key cannot stand in for it; set an RSA key before deploying secrets",
			"reason", err)
	}
}

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
// MQTTServerCertificate key (opened by openPrincipals) and checks they
// belong together.
func loadServerCertificate(cfg *config.Config, signer crypto.Signer, log *slog.Logger) (*tls.Certificate, error) {
	const keyPath = "crypto.principals.MQTTServerCertificate.privateKeyPath"
	if signer == nil {
		return nil, fmt.Errorf("%s: not set; ggcore needs the MQTT server key until the device certificate manager can create one", keyPath)
	}
	certPath := cfg.ServerCertPath()
	chain, err := pki.ReadCertificates(certPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("MQTT server certificate %s is missing (ggprov init writes it): %w", certPath, err)
		}
		return nil, fmt.Errorf("MQTT server certificate: %w", err)
	}
	leaf := chain[0]
	if !samePublicKey(leaf.PublicKey, signer.Public()) {
		return nil, fmt.Errorf("MQTT server certificate %s does not match the key of %s", certPath, keyPath)
	}
	if now := time.Now(); now.After(leaf.NotAfter) {
		log.Error("MQTT server certificate has expired: devices will refuse it until it is renewed",
			"path", certPath, "not_after", leaf.NotAfter)
	}
	tc := &tls.Certificate{PrivateKey: signer, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

// logStats logs the broker's counters.
func logStats(log *slog.Logger, s broker.Stats) {
	log.Info("broker stats", "clients", s.Clients, "refused", s.Refused, "unrouted", s.Unrouted,
		"dropped", s.Dropped, "inflight_dropped", s.InflightDropped)
}
