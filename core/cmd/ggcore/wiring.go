package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/connectivity"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/dcm"
	"github.com/ggcore/ggcore/core/deploy"
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
	// dcm manages the MQTT server certificate; nil when config.json
	// names the server key and the user rotates it.
	dcm *dcm.Manager
	// up is the cloud side (spool and bridge); nil without iotHost.
	up *upstream
	// deployer applies deployments; nil without ggHost. Set before the
	// bridge runs, read by its notification handler.
	deployer *deploy.Deployer[checkedGroup]
	// stopBackground ends the goroutines that talk to the control plane;
	// background waits for them.
	stopBackground context.CancelFunc
	background     sync.WaitGroup

	// groupMu serialises group switches (SIGHUP, deployments) and guards
	// the group's figures below.
	groupMu sync.Mutex

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
	cloud, err := newControlPlane(cfg, signers[iotClient], clientCAs)
	if err != nil {
		return nil, err
	}
	c := &core{log: log, cfg: cfg, keys: store, profile: profile}
	var getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	var hardwareKey bool
	if cfg.Crypto.Principals.MQTTServerCertificate.PrivateKey == "" {
		if cloud == nil {
			return nil, errors.New("crypto.principals.MQTTServerCertificate.privateKeyPath: not set, so ggcore's device certificate manager makes the MQTT server key and gets its certificate from the control plane, but coreThing.ggHost is not set: set ggHost (and ggHttpPort) to ggcloud, or name a server key")
		}
		kind := keys.StoreOf(signers[iotClient])
		c.dcm, err = dcm.New(dcm.Options{
			Dir: filepath.Join(cfg.WriteDirectory, "dcm"),
			Keys: dcm.StoreKeys{Store: store, Kind: kind, Dir: filepath.Join(cfg.WriteDirectory, "dcm"),
				LabelPrefix: cfg.CoreThing.ThingName + "-mqtt-server", Like: cfg.Crypto.Principals.IoTCertificate.PrivateKey,
				Type: dcmKeyType(kind)},
			Issuer:     cloud,
			CommonName: cfg.CoreThing.ThingName,
			Names:      c.serverNames,
			OnRotate:   c.rotated,
			Log:        log,
		})
		if err != nil {
			return nil, err
		}
		getCertificate, hardwareKey = c.dcm.GetCertificate, kind != "file"
	} else {
		serverCert, err := loadServerCertificate(cfg, signers[mqttServer], log)
		if err != nil {
			return nil, err
		}
		getCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serverCert, nil }
		hardwareKey = keys.IsHardware(signers[mqttServer])
	}
	tlsCfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile:        profile,
		ClientCAs:      clientCAs,
		HardwareKey:    hardwareKey,
		GetCertificate: getCertificate,
	})
	if err != nil {
		return nil, err
	}
	g, bg, err := loadGroup(cfg)
	if err != nil {
		return nil, err
	}
	c.groupID, c.devices, c.subscriptions = g.GroupId, len(g.Devices), len(g.Subscriptions)

	var upstreamFn broker.Upstream
	if cfg.CoreThing.IotHost != "" {
		identity, err := loadIdentity(cfg, signers[iotClient])
		if err != nil {
			return nil, err
		}
		deliver := func(topic string, payload []byte, qos byte) error { return c.broker.FromCloud(topic, payload, qos) }
		if c.up, err = openUpstream(cfg, g, identity, clientCAs, deliver, c); err != nil {
			return nil, err
		}
		upstreamFn = c.up.bridge.Publish
	}
	defer func() {
		if err != nil && c.up != nil {
			c.up.spool.Close()
		}
	}()
	logUnavailableTargets(log, g, c.up != nil)

	addr := net.JoinHostPort(cfg.GGCore.LocalMQTTBind, strconv.Itoa(cfg.CoreThing.GGMqttPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("coreThing.ggMqttPort: listen on %s: %w", addr, err)
	}
	b, err := broker.New(broker.Options{Listener: ln, TLS: tlsCfg, Logger: log, Upstream: upstreamFn}, bg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := b.Start(); err != nil {
		ln.Close()
		return nil, err
	}
	c.broker = b
	c.startBackground(cloud)
	return c, nil
}

// newControlPlane is the client of coreThing.ggHost, identified by the
// IoTCertificate principal and verifying the control plane against
// crypto.caPath; nil when ggHost is not set.
func newControlPlane(cfg *config.Config, identity crypto.Signer, roots *x509.CertPool) (*controlplane.Client, error) {
	if cfg.CoreThing.GGHost == "" {
		return nil, nil
	}
	idCert, err := loadIdentity(cfg, identity)
	if err != nil {
		return nil, err
	}
	return controlplane.New(controlplane.Options{
		Host: cfg.CoreThing.GGHost, Port: cfg.CoreThing.GGHttpPort, Thing: cfg.CoreThing.ThingName,
		TLS: tlsconf.Client(roots, cfg.CoreThing.GGHost, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return idCert, nil
		}),
	}), nil
}

// dcmKeyType is the type of the server keys the DCM makes: RSA-2048 as
// in v1, but EC P-256 in a TPM, whose RSA-PSS signatures use a salt TLS
// 1.3 refuses (DESIGN.md "Key backends").
func dcmKeyType(store string) keys.Type {
	if store == "tpm" {
		return keys.ECP256
	}
	return keys.RSA2048
}

// startBackground starts what talks to the control plane: the DCM and the
// connectivity reporter.
func (c *core) startBackground(cloud *controlplane.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopBackground = cancel
	if cloud != nil {
		deployer, err := deploy.New(deploy.Options[checkedGroup]{
			Source:    cloud,
			CoreARN:   c.cfg.CoreThing.ThingArn,
			GroupPath: c.cfg.GroupPath(),
			StatePath: filepath.Join(c.cfg.WriteDirectory, "deployment", "state.json"),
			Check:     c.checkDeployment,
			Activate:  c.switchGroup,
			Interval:  time.Duration(c.cfg.GGCore.DeploymentPollSeconds) * time.Second,
			Log:       c.log,
		})
		if err != nil {
			c.log.Error("deployments are off", "error", err)
		} else {
			c.deployer = deployer
		}
	}
	if c.up != nil {
		c.background.Go(func() {
			if err := c.up.bridge.Run(ctx); err != nil {
				c.log.Error("the cloud bridge stopped", "error", err)
			}
		})
	}
	if cloud == nil {
		return
	}
	if c.dcm != nil {
		c.background.Go(func() { c.dcm.Run(ctx) })
	}
	reporter := &connectivity.Reporter{
		Endpoints: c.endpoints,
		Update:    cloud.UpdateConnectivity,
		Log:       c.log,
		Reported: func(eps []controlplane.Endpoint) {
			// Before the first certificate there is nothing to renew: the
			// first request already names the current addresses.
			if c.dcm != nil && c.dcm.Certificate() != nil && !c.dcm.Covers(connectivity.Hosts(eps)) {
				c.log.Info("the MQTT server certificate does not name every reported address; renewing it")
				c.dcm.Renew()
			}
		},
	}
	c.background.Go(func() { reporter.Run(ctx) })
	if c.deployer != nil {
		c.background.Go(func() { c.deployer.Run(ctx) })
	}
	c.background.Go(func() {
		<-ctx.Done()
		cloud.Close()
	})
}

// endpoints are what the core reports as its connectivity: the
// configured ggcore.connectivity, or its addresses and MQTT port.
func (c *core) endpoints() ([]controlplane.Endpoint, error) {
	if static := c.cfg.GGCore.Connectivity; static != nil {
		return connectivity.Static(static)
	}
	addrs, err := connectivity.Addresses(c.cfg.GGCore.LocalMQTTBind)
	if err != nil {
		return nil, err
	}
	return connectivity.Endpoints(addrs, c.broker.Addr().(*net.TCPAddr).Port), nil
}

// serverNames are the names the MQTT server certificate is requested
// for: the reported hosts, and localhost when one is a loopback address.
func (c *core) serverNames() []string {
	eps, err := c.endpoints()
	if err != nil {
		c.log.Warn("cannot list the core's addresses for its server certificate", "error", err)
		return nil
	}
	names := connectivity.Hosts(eps)
	for _, h := range names {
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return append(names, "localhost")
		}
	}
	return names
}

// rotated runs after the DCM replaced the served certificate.
func (c *core) rotated() {
	if !c.cfg.GGCore.DisconnectOnRotation {
		c.log.Info("MQTT server certificate rotated; connected devices stay connected, new connections get the new certificate")
		return
	}
	n := c.broker.DisconnectAll()
	c.log.Info("MQTT server certificate rotated; disconnected every device (ggcore.disconnectOnRotation)", "devices", n)
}

// stop stops the background work, the broker, and closes the key store.
func (c *core) stop() error {
	c.stopBackground()
	c.background.Wait()
	err := c.broker.Close()
	logStats(c.log, c.stats())
	if c.up != nil {
		if serr := c.up.spool.Close(); serr != nil {
			c.log.Error("closing the cloud spool", "error", serr)
		}
	}
	if kerr := c.keys.Close(); kerr != nil {
		c.log.Error("closing the key store", "error", kerr)
	}
	return err
}

// reloadGroup re-reads group.json; a bad group is refused and the running
// table kept.
func (c *core) reloadGroup() {
	g, bg, err := loadGroup(c.cfg)
	if err == nil {
		err = c.switchGroup(checkedGroup{g, bg})
	}
	if err != nil {
		c.log.Error("group reload refused; keeping the running group", "path", c.cfg.GroupPath(), "error", err)
		return
	}
	c.log.Info("group reloaded", "group", g.GroupId, "version", g.GroupVersionId,
		"devices", len(g.Devices), "subscriptions", len(g.Subscriptions))
}

// checkedGroup is a group.json that passed every check, with what the
// broker enforces for it.
type checkedGroup struct {
	g  *config.Group
	bg broker.Group
}

// switchGroup makes the broker enforce g, in one step.
func (c *core) switchGroup(g checkedGroup) error {
	c.groupMu.Lock()
	defer c.groupMu.Unlock()
	if err := c.broker.SetGroup(g.bg); err != nil {
		return err
	}
	if c.up != nil {
		c.up.bridge.SetFilters(cloudFilters(g.g))
	}
	logUnavailableTargets(c.log, g.g, c.up != nil)
	c.groupID, c.devices, c.subscriptions = g.g.GroupId, len(g.g.Devices), len(g.g.Subscriptions)
	return nil
}

// checkDeployment checks a deployment's group.json completely before
// anything changes: its format, that it is this core's, that it is the
// running group's (a core serves one group), and its routing table.
func (c *core) checkDeployment(ref controlplane.DeploymentRef, data []byte) (checkedGroup, error) {
	g, err := config.ParseGroup(data)
	if err != nil {
		return checkedGroup{}, err
	}
	c.groupMu.Lock()
	running := c.groupID
	c.groupMu.Unlock()
	switch {
	case g.GroupId != ref.GroupId:
		return checkedGroup{}, fmt.Errorf("GroupId %q: the deployment is of group %q", g.GroupId, ref.GroupId)
	case g.GroupId != running:
		return checkedGroup{}, fmt.Errorf("GroupId %q: this core serves group %q", g.GroupId, running)
	}
	bg, err := brokerGroup(c.cfg, g)
	if err != nil {
		return checkedGroup{}, err
	}
	return checkedGroup{g, bg}, nil
}

// loadGroup reads group.json and builds what the broker enforces.
func loadGroup(cfg *config.Config) (*config.Group, broker.Group, error) {
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		return nil, broker.Group{}, err
	}
	bg, err := brokerGroup(cfg, g)
	if err != nil {
		return nil, broker.Group{}, fmt.Errorf("%s: %w", cfg.GroupPath(), err)
	}
	return g, bg, nil
}

// brokerGroup checks that g is this core's and builds its routing table.
func brokerGroup(cfg *config.Config, g *config.Group) (broker.Group, error) {
	if core := g.Cores[0]; core.ThingArn != cfg.CoreThing.ThingArn {
		return broker.Group{}, fmt.Errorf("Cores[0].ThingArn %q is not this core (coreThing.thingArn %q)",
			core.ThingArn, cfg.CoreThing.ThingArn)
	}
	subs := make([]router.Subscription, len(g.Subscriptions))
	for i, s := range g.Subscriptions {
		subs[i] = router.Subscription{ID: s.Id, Source: s.Source, Subject: s.Subject, Target: s.Target}
	}
	table, err := router.New(subs)
	if err != nil {
		return broker.Group{}, err
	}
	bg := broker.Group{ID: g.GroupId, Table: table, Devices: make([]broker.Thing, len(g.Devices))}
	for i, d := range g.Devices {
		bg.Devices[i] = broker.Thing{Name: d.Name(), ARN: d.ThingArn, CertificateID: d.CertificateID()}
	}
	return bg, nil
}

// logUnavailableTargets names subscriptions whose source or target does
// not exist in this core (the cloud without iotHost, the shadow service,
// Lambda functions); they are valid and route nothing.
func logUnavailableTargets(log *slog.Logger, g *config.Group, cloudOn bool) {
	for _, s := range g.Subscriptions {
		for _, end := range []string{s.Source, s.Target} {
			switch {
			case end == "cloud" && !cloudOn:
				log.Warn("subscription endpoint cloud: coreThing.iotHost is not set, so it routes nothing",
					"subscription", s.Id)
			case end == "GGShadowService":
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

// stats are the counters logged every minute when they change.
type stats struct {
	broker.Stats
	// Spooled messages wait for the cloud; SpoolDropped were dropped,
	// oldest first, to make room (since start); UpstreamRefused were
	// refused by the upstream broker and dropped.
	Spooled, SpoolDropped, UpstreamRefused int64
}

// stats reads the counters.
func (c *core) stats() stats {
	s := stats{Stats: c.broker.Stats()}
	if c.up != nil {
		st := c.up.spool.Stats()
		s.Spooled, s.SpoolDropped = int64(st.Messages), int64(st.Dropped)
		s.UpstreamRefused = c.up.bridge.Refused()
	}
	return s
}

// logStats logs the counters.
func logStats(log *slog.Logger, s stats) {
	log.Info("broker stats", "clients", s.Clients, "refused", s.Refused, "unrouted", s.Unrouted,
		"dropped", s.Dropped, "inflight_dropped", s.InflightDropped, "spooled", s.Spooled, "spool_dropped", s.SpoolDropped,
		"upstream_refused", s.UpstreamRefused)
}
