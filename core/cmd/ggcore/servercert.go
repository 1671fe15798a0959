package main

import (
	"crypto"
	"errors"
	"log/slog"
	"net"
	"path/filepath"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/connectivity"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/dcm"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// newDCM is the device certificate manager: it makes MQTT server keys
// where the identity key lives (a file, the TPM or the token), gets their
// certificates from the control plane for the names names returns, and
// calls onRotate after each renewal.
func newDCM(cfg *config.Config, store *keys.Store, identity crypto.Signer, cloud *controlplane.Client,
	names func() []string, onRotate func(), log *slog.Logger) (*dcm.Manager, error) {
	if cloud == nil {
		return nil, errors.New("crypto.principals.MQTTServerCertificate.privateKeyPath: not set, so ggcore's device certificate manager makes the MQTT server key and gets its certificate from the control plane, but coreThing.ggHost is not set: set ggHost (and ggHttpPort) to ggcloud, or name a server key")
	}
	dir := filepath.Join(cfg.WriteDirectory, "dcm")
	kind := keys.StoreOf(identity)
	return dcm.New(dcm.Options{
		Dir: dir,
		Keys: dcm.StoreKeys{Store: store, Kind: kind, Dir: dir,
			LabelPrefix: cfg.CoreThing.ThingName + "-mqtt-server", Like: cfg.Crypto.Principals.IoTCertificate.PrivateKey,
			Type: dcmKeyType(kind)},
		Issuer:     cloud,
		CommonName: cfg.CoreThing.ThingName,
		Names:      names,
		OnRotate:   onRotate,
		Log:        log,
	})
}

// dcmKeyType is the type of the server keys the DCM makes: RSA-2048 as
// in v1, but EC P-256 in a TPM, whose RSA-PSS signatures use a salt TLS
// 1.3 refuses (docs/design.md "Key backends").
func dcmKeyType(store keyspec.Backend) keyspec.Type {
	if store == keyspec.TPM {
		return keyspec.ECP256
	}
	return keyspec.RSA2048
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
