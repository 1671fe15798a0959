package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/cli"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// cloudCertValidity is how long ggcloud's server certificate lasts.
const cloudCertValidity = 365 * 24 * time.Hour

// runGGCloudCert issues ggcloud's HTTPS server certificate from the
// bundle's root CA, so that the core (which verifies the control plane
// against crypto.caPath) and the fleet's devices trust it. It writes
// DIR/ggcloud/server.cert.pem and server.key.pem (EC P-256, mode 0600)
// and refuses to replace them.
func runGGCloudCert(_ context.Context, inv *cli.Invocation) error {
	fs := inv.Flags
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	var hosts stringList
	fs.Var(&hosts, "host", "a DNS name or IP address ggcloud is reached by (repeat for more; default 127.0.0.1 and localhost)")
	if _, err := inv.Parse("", 0, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	if len(hosts) == 0 {
		hosts = stringList{"127.0.0.1", "localhost"}
	}
	for _, h := range hosts {
		if !validServerName(h) {
			return usagef("--host %q: want a DNS name or an IP address", h)
		}
	}
	root, err := loadCA(filepath.Join(*dir, "certs", "root.ca"))
	if err != nil {
		return fmt.Errorf("the bundle's root CA: %w", err)
	}
	out := filepath.Join(*dir, "ggcloud")
	certPath, keyPath := filepath.Join(out, "server.cert.pem"), filepath.Join(out, "server.key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s exists; remove it first to issue a new one", p)
		}
	}
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	names := addNames(nil, nil, hosts)
	cert, err := root.Issue(key.Public(), pki.Leaf{CommonName: "ggcloud", DNSNames: names.dns, IPs: names.ips,
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(cloudCertValidity)})
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	keyPEM, err := keys.MarshalPEM(key)
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("%w", err)
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("%w", err)
	}
	if err := writeFile(certPath, pki.EncodeCertificate(cert), 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("%w", err)
	}
	fmt.Fprintf(inv.Stdout, "ggcloud server certificate %s (key %s) for %v, valid until %s\n",
		certPath, keyPath, []string(hosts), cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
