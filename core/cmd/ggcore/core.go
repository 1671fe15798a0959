package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/clock"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/dcm"
	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/secrets"
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
	// clock keeps the system clock right; nil when ggcore.time is unset.
	clock *clock.Clock
	// up is the cloud side (spool and bridge); nil without iotHost.
	up *upstream
	// deployer applies deployments; nil without ggHost. Set before the
	// bridge runs, read by its notification handler.
	deployer *deploy.Deployer[checkedGroup]
	// secrets serves the group's deployed secrets to its functions.
	secrets *secrets.Store
	// fn runs the group's local functions; nil until it has some.
	fn *localFunctions
	// ota installs image updates and commits trial boots (ota.go); nil
	// without a system disk. reboot asks main to stop and exit with
	// exitReboot.
	ota    *otaUpdater
	reboot chan string
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
//
// warm, if not nil, is a TPM connection opened early (warmTPM) that the
// keys' store takes when the config names its device.
func start(configPath string, log *slog.Logger, warm *tpmWarmup) (_ *core, err error) {
	tr := newStartupTrace(log)
	cfg, err := config.LoadConfig(configPath)
	if err != nil {
		return nil, err
	}
	tr.step("config read")
	store := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device, PKCS11: cfg.Crypto.PKCS11, OpenTPM: warm.open})
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
	// The keys, the broker's session store, and the CAs with the group
	// are opened side by side: a TPM or token answers one command at a
	// time (milliseconds each on an emulated machine), the store is read
	// through, and none needs another. The checks still fail in the order
	// below, and nothing is bound before all of them have passed; a
	// refused start removes the store it opened (openSessions' undo).
	var ps principals
	keysOpened := make(chan error, 1)
	go func() {
		var err error
		ps, err = openPrincipals(cfg, store, log, tr)
		keysOpened <- err
	}()
	sessions := persistence(cfg)
	type opened struct {
		undo func()
		err  error
	}
	sessionsOpened := make(chan opened, 1)
	go func() {
		undo, err := openSessions(sessions, log)
		tr.step("session store opened")
		sessionsOpened <- opened{undo, err}
	}()
	sessionsResult := sync.OnceValue(func() opened { return <-sessionsOpened })
	g, bg, groupErr := loadGroup(cfg)
	tr.step("group read")
	// The broker is built and started, bound to nothing, while the keys
	// load (and it takes the session store once that is open); it serves
	// once the keys and everything else have passed.
	prepareBroker := startBrokerPrepare(groupErr == nil, func() (*broker.Broker, error) {
		b, err := broker.Prepare(broker.Options{Logger: log, Persistence: sessions, Limits: brokerLimits(cfg),
			PersistenceOpened: func() error { return sessionsResult().err }}, bg)
		tr.step("broker prepared")
		return b, err
	})
	clientCAs, caErr := loadCAPool(cfg.Crypto.CAPath)
	tr.step("CAs read")
	so := sessionsResult()
	defer func() {
		if err != nil {
			so.undo()
		}
	}()
	sessionsErr := so.err
	defer func() {
		if b, _ := prepareBroker(); err != nil && b != nil {
			b.Close() // before the store's undo above
		}
	}()
	if err := <-keysOpened; err != nil {
		return nil, err
	}
	tr.step("keys opened")
	warnSecretsFallback(cfg, ps, log)
	if caErr != nil {
		return nil, fmt.Errorf("crypto.caPath: %w", caErr)
	}
	cloud, err := newControlPlane(cfg, ps.iot, clientCAs)
	if err != nil {
		return nil, err
	}
	c := &core{log: log, cfg: cfg, keys: store, profile: profile, reboot: make(chan string, 1)}
	c.ota = newOTA(cfg, store, ps.iot, log)
	c.clock = newClock(cfg, ps.iot, clientCAs, c.clockStepped, log)
	tr.step("control plane, OTA and clock set up")
	getCertificate, hardwareKey, err := c.serverCertificate(store, ps, cloud)
	if err != nil {
		return nil, err
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
	if groupErr != nil {
		return nil, groupErr
	}
	c.groupID, c.devices, c.subscriptions = g.GroupId, len(g.Devices), len(g.Subscriptions)
	c.openSecrets(ps, g)
	tr.step("TLS and secrets set up")

	var upstreamFn broker.Upstream
	if ct := cfg.CoreThing; ct.IotHost != "" {
		identity, err := loadIdentity(cfg, ps.iot)
		if err != nil {
			return nil, err
		}
		maxBytes, err := g.SpoolMaxBytes()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.GroupPath(), err)
		}
		c.up, err = openUpstream(upstreamOptions{
			host: ct.IotHost, port: ct.IotMqttPort, clientID: ct.ThingName,
			keepAlive:        uint16(ct.KeepAlive),
			maxRetryInterval: time.Duration(ct.MQTTMaxConnectionRetryInterval) * time.Second,
			identity:         identity,
			roots:            clientCAs,
			spoolPath:        filepath.Join(cfg.WriteDirectory, "spool", "cloud.db"),
			spoolMaxBytes:    maxBytes,
			filters:          cloudFilters(g),
			deliver:          func(topic string, payload []byte, qos byte) error { return c.broker.FromCloud(topic, payload, qos) },
			notifyTopic:      deploy.NotifyTopic(ct.ThingName),
			onNotify:         c.deploymentNotified,
			log:              log,
		})
		if err != nil {
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

	if sessionsErr != nil {
		return nil, sessionsErr
	}
	b, err := prepareBroker()
	if err != nil {
		return nil, err
	}
	b.SetUpstream(upstreamFn)
	addr := net.JoinHostPort(cfg.GGCore.LocalMQTTBind, strconv.Itoa(cfg.CoreThing.GGMqttPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("coreThing.ggMqttPort: listen on %s: %w", addr, err)
	}
	tr.step("listening")
	if err := b.Serve(ln, tlsCfg); err != nil {
		ln.Close()
		return nil, err
	}
	tr.step("broker serving")
	c.broker = b
	if err := c.switchFunctions(g); err != nil {
		b.Close()
		return nil, err
	}
	c.startBackground(cloud)
	return c, nil
}

// brokerLimits are the broker's limits with ggcore.subscriberQueue
// applied; zero fields take the broker's defaults.
func brokerLimits(cfg *config.Config) broker.Limits {
	q := cfg.GGCore.SubscriberQueue
	return broker.Limits{QueueMessages: int(q.MaxMessages), QueueBytes: q.MaxBytes, TotalQueueBytes: q.MaxTotalBytes}
}

// persistence is where and how much the broker keeps of its sessions
// across restarts: <writeDirectory>/broker/sessions.db, bounded by
// ggcore.persistence; nil when that is disabled.
func persistence(cfg *config.Config) *broker.Persistence {
	p := cfg.GGCore.Persistence
	if p.Disabled {
		return nil
	}
	return &broker.Persistence{Path: filepath.Join(cfg.WriteDirectory, "broker", "sessions.db"),
		MaxBytes: p.MaxBytes, MaxMessages: p.MaxMessages}
}

// openSessions opens the broker's session store p (nil: none) ahead of
// the broker, which takes it over. undo, for a start that fails, closes
// it unless the broker took it over and removes the file and directory
// that opening it created: a refused start changes nothing on disk.
func openSessions(p *broker.Persistence, log *slog.Logger) (undo func(), err error) {
	if p == nil {
		return func() {}, nil
	}
	var created []string
	for _, path := range []string{filepath.Dir(p.Path), p.Path} {
		if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
			created = append(created, path)
		}
	}
	err = p.Open(log)
	return func() {
		p.Discard()
		for _, path := range slices.Backward(created) {
			os.Remove(path)
		}
	}, err
}

// serverCertificate sets up where the MQTT server certificate comes from:
// the certificate file paired with the MQTTServerCertificate key, or,
// when config.json names no server key, the device certificate manager.
// It also says whether the server key is in hardware.
func (c *core) serverCertificate(store *keys.Store, ps principals, cloud *controlplane.Client) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), bool, error) {
	if ps.mqttServer != nil {
		serverCert, err := loadServerCertificate(c.cfg, ps.mqttServer, c.log)
		if err != nil {
			return nil, false, err
		}
		serve := func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return serverCert, nil }
		return serve, keys.IsHardware(ps.mqttServer), nil
	}
	m, err := newDCM(c.cfg, store, ps.iot, cloud, c.serverNames, c.rotated, c.log)
	if err != nil {
		return nil, false, err
	}
	c.dcm = m
	return m.GetCertificate, keys.IsHardware(ps.iot), nil
}

// stop stops the background work, the broker, and closes the key store.
func (c *core) stop() error {
	c.stopBackground()
	c.background.Wait()
	c.stopFunctions()
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

// startBrokerPrepare runs prepare in the background when run is true and
// returns a function that waits for its result, as often as asked; when
// run is false it answers nil, nil at once.
func startBrokerPrepare(run bool, prepare func() (*broker.Broker, error)) func() (*broker.Broker, error) {
	if !run {
		return func() (*broker.Broker, error) { return nil, nil }
	}
	type result struct {
		b   *broker.Broker
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := prepare()
		done <- result{b, err}
	}()
	return sync.OnceValues(func() (*broker.Broker, error) {
		r := <-done
		return r.b, r.err
	})
}
