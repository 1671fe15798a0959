package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
)

// cloudCertValidity is how long ggcloud's server certificate lasts.
const cloudCertValidity = 365 * 24 * time.Hour

// runGGCloudCert issues ggcloud's HTTPS server certificate from the
// bundle's root CA, so that the core (which verifies the control plane
// against crypto.caPath) and the fleet's devices trust it. It writes
// DIR/ggcloud/server.cert.pem and server.key.pem (EC P-256, mode 0600)
// and refuses to replace them.
func runGGCloudCert(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ggprov ggcloud-cert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "bundle directory written by ggprov init")
	var hosts stringList
	fs.Var(&hosts, "host", "a DNS name or IP address ggcloud is reached by (repeat for more; default 127.0.0.1 and localhost)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("ggcloud-cert: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("ggcloud-cert: unexpected argument %q", fs.Arg(0))
	}
	if *dir == "" {
		return usagef("ggcloud-cert: --dir is required")
	}
	if len(hosts) == 0 {
		hosts = stringList{"127.0.0.1", "localhost"}
	}
	for _, h := range hosts {
		if !validServerName(h) {
			return usagef("ggcloud-cert: --host %q: want a DNS name or an IP address", h)
		}
	}
	root, err := loadCA(filepath.Join(*dir, "certs", "root.ca"))
	if err != nil {
		return fmt.Errorf("ggcloud-cert: the bundle's root CA: %w", err)
	}
	out := filepath.Join(*dir, "ggcloud")
	certPath, keyPath := filepath.Join(out, "server.cert.pem"), filepath.Join(out, "server.key.pem")
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("ggcloud-cert: %s exists; remove it first to issue a new one", p)
		}
	}
	key, err := keys.Generate(keys.ECP256)
	if err != nil {
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	names := addNames(nil, nil, hosts)
	cert, err := root.Issue(key.Public(), pki.Leaf{CommonName: "ggcloud", DNSNames: names.dns, IPs: names.ips,
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(cloudCertValidity)})
	if err != nil {
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	keyPEM, err := keys.MarshalPEM(key)
	if err != nil {
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	if err := writeFile(certPath, pki.EncodeCertificate(cert), 0o644); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("ggcloud-cert: %w", err)
	}
	fmt.Fprintf(stdout, "ggcloud server certificate %s (key %s) for %v, valid until %s\n",
		certPath, keyPath, []string(hosts), cert.NotAfter.UTC().Format(time.RFC3339))
	return nil
}
