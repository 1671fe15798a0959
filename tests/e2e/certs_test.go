package e2e

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// identity is a client certificate and key on disk (PEM), as mosquitto and
// openssl need them; der is the certificate, when the test made it.
type identity struct {
	certFile, keyFile string
	der               []byte
}

// tlsCertificate loads the identity for crypto/tls.
func (id identity) tlsCertificate(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(id.certFile, id.keyFile)
	if err != nil {
		t.Fatalf("load client certificate %s: %v", id.certFile, err)
	}
	return c
}

// certificateID is the AWS certificate ID: lowercase hex SHA-256 of the DER.
func certificateID(der []byte) string { return pki.CertificateID(der) }

// authority is a CA the test can sign with.
type authority struct{ *pki.CA }

// loadAuthority reads a CA certificate and its key (PKCS#1, PKCS#8 or SEC1 PEM).
func loadAuthority(t *testing.T, certFile, keyFile string) authority {
	t.Helper()
	certs, err := pki.ReadCertificates(certFile)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("read CA key: %v", err)
	}
	key, err := keys.ParsePEM(pem)
	if err != nil {
		t.Fatalf("%s: %v", keyFile, err)
	}
	return authority{&pki.CA{Cert: certs[0], Key: key}}
}

// newAuthority makes a fresh self-signed CA, unrelated to any bundle.
func newAuthority(t *testing.T, cn string) authority {
	t.Helper()
	ca, err := pki.NewCA(cn, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return authority{ca}
}

// issue signs a client certificate for cn, valid from notBefore to
// notAfter, and writes it with its new key into the test's temp dir.
func (a authority) issue(t *testing.T, cn string, notBefore, notAfter time.Time) identity {
	t.Helper()
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.Issue(key.Public(), pki.Leaf{CommonName: cn, Usage: pki.ClientAuth, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatalf("issue %s: %v", cn, err)
	}
	keyPEM, err := keys.MarshalPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := identity{
		certFile: filepath.Join(dir, cn+".cert.pem"),
		keyFile:  filepath.Join(dir, cn+".key.pem"),
		der:      cert.Raw,
	}
	for path, data := range map[string][]byte{id.certFile: pki.EncodeCertificate(cert), id.keyFile: keyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return id
}
