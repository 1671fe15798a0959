package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/cli"
)

// runServerCert re-issues a bundle's MQTT server certificate from its
// group CA, for the same key and names (plus any --server-name), valid for
// the group's CertificateExpiryInMilliseconds. It stands in for the device
// certificate manager until that exists; send ggcore SIGTERM and start it
// again to serve the new certificate.
func runServerCert(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	var names stringList
	fs.Var(&names, "server-name", "a DNS name or IP address to add to the certificate (repeat for more)")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	cfg, err := config.LoadConfig(filepath.Join(*dir, "config.json"))
	if err != nil {
		return err
	}
	g, err := config.LoadGroup(cfg.GroupPath())
	if err != nil {
		return err
	}
	ref := cfg.Crypto.Principals.MQTTServerCertificate.PrivateKey
	if ref == "" {
		return errors.New("crypto.principals.MQTTServerCertificate.privateKeyPath is not set")
	}
	store := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device, PKCS11: cfg.Crypto.PKCS11})
	defer store.Close()
	key, err := store.Open(ref)
	if err != nil {
		return fmt.Errorf("crypto.principals.MQTTServerCertificate.privateKeyPath: %w", err)
	}
	groupCA, err := loadCA(filepath.Join(*dir, "certs", "group-ca"))
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	old, err := pki.ReadCertificates(cfg.ServerCertPath())
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	for _, n := range names {
		if !validServerName(n) {
			return usagef("--server-name %q: want a DNS name or an IP address", n)
		}
	}
	cert, err := issueServerCertificate(groupCA, key.Public(), cfg.CoreThing.ThingName,
		addNames(old[0].DNSNames, old[0].IPAddresses, names), g.CertificateExpiry())
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	if err := replaceFile(cfg.ServerCertPath(), pki.EncodeCertificate(cert)); err != nil {
		return fmt.Errorf("%w", err)
	}
	fmt.Fprintf(inv.Stdout, "MQTT server certificate %s valid until %s; restart ggcore to serve it\n",
		cfg.ServerCertPath(), cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// loadCA reads PREFIX.pem and PREFIX.key.
func loadCA(prefix string) (*pki.CA, error) {
	certs, err := pki.ReadCertificates(prefix + ".pem")
	if err != nil {
		return nil, err
	}
	key, err := keys.Open("file://" + prefix + ".key")
	if err != nil {
		return nil, err
	}
	return &pki.CA{Cert: certs[0], Key: key}, nil
}
