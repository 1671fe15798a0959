package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// needOpenSSL returns the openssl binary (see testtool.Require).
func needOpenSSL(t *testing.T) string { return testtool.Require(t, "openssl") }

func TestNewCAIsAProperRoot(t *testing.T) {
	const validity = 20 * 365 * 24 * time.Hour
	before := time.Now().Truncate(time.Second) // certificates hold whole seconds
	a, err := NewCA("identity CA", validity)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCA("identity CA", validity)
	if err != nil {
		t.Fatal(err)
	}
	c := a.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("not marked a CA in basicConstraints")
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("pathLen %d (zero %v): a CA that signs only leaves wants pathLen 0", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("key usage %b lacks certSign", c.KeyUsage)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature %v, want SHA256-RSA", c.SignatureAlgorithm)
	}
	if pub, ok := c.PublicKey.(*rsa.PublicKey); !ok || pub.N.BitLen() != 2048 {
		t.Errorf("key %T, want RSA-2048", c.PublicKey)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no subjectKeyIdentifier")
	}
	if c.Subject.CommonName != "identity CA" || !bytes.Equal(c.RawSubject, c.RawIssuer) {
		t.Errorf("subject %v issuer %v: want a self-signed CA named as asked", c.Subject, c.Issuer)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("self-signature: %v", err)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() < 64 || c.SerialNumber.BitLen() > 129 {
		t.Errorf("serial %x: want a positive random serial of about 128 bits", c.SerialNumber)
	}
	if c.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 {
		t.Error("two CAs got the same serial")
	}
	if c.NotBefore.After(before) || c.NotAfter.Before(before.Add(validity)) || c.NotAfter.After(time.Now().Add(validity)) {
		t.Errorf("valid %s to %s, want from now for %s", c.NotBefore, c.NotAfter, validity)
	}
	if !a.Key.Public().(*rsa.PublicKey).Equal(c.PublicKey) {
		t.Error("CA key does not match its certificate")
	}
}

func TestIssueLeafFields(t *testing.T) {
	ca, err := NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	notBefore := time.Now().Add(-time.Minute).Truncate(time.Second).UTC()
	notAfter := notBefore.Add(7 * 24 * time.Hour)
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	tests := []struct {
		name    string
		pub     any
		leaf    Leaf
		keyEnc  bool
		ext     x509.ExtKeyUsage
		notExt  x509.ExtKeyUsage
		verify  []string // names the certificate must verify for (server)
		refused []string // names it must not verify for
	}{
		{
			name:   "EC device",
			pub:    &ecKey.PublicKey,
			leaf:   Leaf{CommonName: "dev1", Usage: ClientAuth, NotBefore: notBefore, NotAfter: notAfter},
			ext:    x509.ExtKeyUsageClientAuth,
			notExt: x509.ExtKeyUsageServerAuth,
		},
		{
			name:    "RSA MQTT server",
			pub:     &rsaKey.PublicKey,
			leaf:    Leaf{CommonName: "core", DNSNames: []string{"localhost", "gw1"}, IPs: ips, Usage: ServerAuth, NotBefore: notBefore, NotAfter: notAfter},
			keyEnc:  true,
			ext:     x509.ExtKeyUsageServerAuth,
			notExt:  x509.ExtKeyUsageClientAuth,
			verify:  []string{"localhost", "gw1", "127.0.0.1", "::1"},
			refused: []string{"example.com", "10.0.0.1"},
		},
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(tt.pub, tt.leaf)
			if err != nil {
				t.Fatal(err)
			}
			if c.IsCA {
				t.Error("leaf is marked a CA")
			}
			if c.Subject.CommonName != tt.leaf.CommonName {
				t.Errorf("CN %q, want %q", c.Subject.CommonName, tt.leaf.CommonName)
			}
			if !c.NotBefore.Equal(notBefore) || !c.NotAfter.Equal(notAfter) {
				t.Errorf("valid %s to %s, want %s to %s", c.NotBefore, c.NotAfter, notBefore, notAfter)
			}
			if c.SignatureAlgorithm != x509.SHA256WithRSA {
				t.Errorf("signature %v, want SHA256-RSA", c.SignatureAlgorithm)
			}
			if c.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
				t.Error("no digitalSignature key usage")
			}
			if got := c.KeyUsage&x509.KeyUsageKeyEncipherment != 0; got != tt.keyEnc {
				t.Errorf("keyEncipherment %v, want %v", got, tt.keyEnc)
			}
			if !bytes.Equal(c.AuthorityKeyId, ca.Cert.SubjectKeyId) {
				t.Error("authorityKeyIdentifier is not the CA's subjectKeyIdentifier")
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.ext}}); err != nil {
				t.Errorf("verify for %v: %v", tt.ext, err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.notExt}}); err == nil {
				t.Errorf("verifies for %v too; a device certificate must not serve as a server certificate and back", tt.notExt)
			}
			for _, name := range tt.verify {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
					t.Errorf("verify for %s: %v", name, err)
				}
			}
			for _, name := range tt.refused {
				if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err == nil {
					t.Errorf("verifies for %s, which it does not name", name)
				}
			}
		})
	}
}

func TestIssueRefusals(t *testing.T) {
	ca, err := NewCA("CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecCA := &CA{Cert: ca.Cert, Key: ecKey}
	if _, err := ecCA.Issue(&ecKey.PublicKey, Leaf{CommonName: "x", NotAfter: time.Now().Add(time.Hour)}); err == nil ||
		!strings.Contains(err.Error(), "RSA") {
		t.Errorf("an EC CA issued a certificate (%v); v1 clients expect SHA256-RSA signatures", err)
	}
	if _, err := ca.Issue(&ecKey.PublicKey, Leaf{CommonName: "x"}); err == nil {
		t.Error("issued a certificate without NotAfter")
	}
	if _, err := ca.Issue(&ecKey.PublicKey, Leaf{CommonName: "x", Usage: Usage(42), NotAfter: time.Now().Add(time.Hour)}); err == nil {
		t.Error("issued a certificate of unknown usage")
	}
}

func TestClientAndServerAuth(t *testing.T) {
	ca, _ := NewCA("CA", time.Hour)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c, err := ca.Issue(&key.PublicKey, Leaf{CommonName: "core", DNSNames: []string{"localhost"}, Usage: ClientAndServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("verify for %v: %v", u, err)
		}
	}
}

func TestSignCSRRefusesWeakKeys(t *testing.T) {
	ca, _ := NewCA("group CA", time.Hour)
	weak, _ := rsa.GenerateKey(rand.Reader, 1024)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"localhost"}}, weak)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	if _, err := ca.SignCSR(csr, ServerAuth, time.Now().Add(time.Hour)); err == nil || !strings.Contains(err.Error(), "RSA-1024") {
		t.Errorf("signed a CSR for an RSA-1024 key (%v)", err)
	}
}

func TestSignCSRCarriesIPs(t *testing.T) {
	ca, _ := NewCA("group CA", time.Hour)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(192, 0, 2, 7)},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignCSR(csr, ServerAuth, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "192.0.2.7"}); err != nil {
		t.Errorf("verify for the CSR's IP: %v", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
}

// TestOpenSSLAgrees checks chains, signature algorithm and certificate IDs
// with openssl, the tool operators (and mosquitto) use.
func TestOpenSSLAgrees(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
	ca, err := NewCA("identity CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	client, err := ca.Issue(&ecKey.PublicKey, Leaf{CommonName: "dev1", Usage: ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.Issue(&rsaKey.PublicKey, Leaf{CommonName: "core", DNSNames: []string{"localhost"}, Usage: ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, EncodeCertificate(c), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caPath := write("ca.pem", ca.Cert)
	for _, tt := range []struct {
		name, purpose string
		cert          *x509.Certificate
	}{
		{"client.pem", "sslclient", client},
		{"server.pem", "sslserver", server},
	} {
		path := write(tt.name, tt.cert)
		if out, err := exec.Command(openssl, "verify", "-CAfile", caPath, "-purpose", tt.purpose, path).CombinedOutput(); err != nil {
			t.Errorf("openssl verify -purpose %s %s: %v\n%s", tt.purpose, tt.name, err, out)
		}
		text, err := exec.Command(openssl, "x509", "-in", path, "-noout", "-text").Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), "Signature Algorithm: sha256WithRSAEncryption") {
			t.Errorf("%s: openssl does not see a sha256WithRSAEncryption signature", tt.name)
		}
		der, err := exec.Command(openssl, "x509", "-in", path, "-outform", "DER").Output()
		if err != nil {
			t.Fatal(err)
		}
		certs, err := ReadCertificates(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(der, certs[0].Raw) || CertificateID(der) != CertificateID(tt.cert.Raw) {
			t.Errorf("%s: DER from openssl differs from ours", tt.name)
		}
	}
	if out, err := exec.Command(openssl, "verify", "-CAfile", caPath, "-purpose", "sslserver", filepath.Join(dir, "client.pem")).CombinedOutput(); err == nil {
		t.Errorf("openssl accepts the client certificate as a server certificate:\n%s", out)
	}
}

func TestCertificateIDKnownAnswer(t *testing.T) {
	// SHA-256 of the three bytes "abc" (FIPS 180-2 example).
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := CertificateID([]byte("abc")); got != want {
		t.Fatalf("CertificateID = %s, want %s", got, want)
	}
}

func TestReadCertificatesKeepsOrderAndNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	a, _ := NewCA("a", time.Hour)
	b, _ := NewCA("b", time.Hour)
	path := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(path, append(EncodeCertificate(a.Cert), EncodeCertificate(b.Cert)...), 0o644); err != nil {
		t.Fatal(err)
	}
	certs, err := ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || certs[0].Subject.CommonName != "a" || certs[1].Subject.CommonName != "b" {
		t.Fatalf("read %d certificates, want a then b", len(certs))
	}
	bad := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(bad, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bad, filepath.Join(dir, "missing.pem")} {
		if _, err := ReadCertificates(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("ReadCertificates(%s) = %v, want an error naming the file", p, err)
		}
	}
}
