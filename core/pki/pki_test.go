package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestIssueChainsAndSignsSHA256RSA(t *testing.T) {
	ca, err := NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tests := []struct {
		name  string
		leaf  Leaf
		usage x509.ExtKeyUsage
	}{
		{"device", Leaf{CommonName: "dev1", Usage: ClientAuth, NotAfter: time.Now().Add(time.Hour)}, x509.ExtKeyUsageClientAuth},
		{"server", Leaf{CommonName: "core", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
			Usage: ServerAuth, NotAfter: time.Now().Add(time.Hour)}, x509.ExtKeyUsageServerAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := ca.Issue(&key.PublicKey, tt.leaf)
			if err != nil {
				t.Fatal(err)
			}
			if cert.SignatureAlgorithm != x509.SHA256WithRSA {
				t.Errorf("signature %v, want SHA256-RSA", cert.SignatureAlgorithm)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			opts := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{tt.usage}}
			if tt.usage == x509.ExtKeyUsageServerAuth {
				opts.DNSName = "localhost"
			}
			if _, err := cert.Verify(opts); err != nil {
				t.Fatalf("verify: %v", err)
			}
		})
	}
	if _, err := ca.Issue(&key.PublicKey, Leaf{CommonName: "x", NotAfter: time.Now().Add(-time.Hour)}); err == nil {
		t.Error("issued a certificate that ends before it starts")
	}
}

func TestSignCSRChecksTheSignature(t *testing.T) {
	ca, _ := NewCA("test CA", time.Hour)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "core"}, DNSNames: []string{"localhost"},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(der)
	cert, err := ca.SignCSR(csr, ServerAuth, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "core" || cert.DNSNames[0] != "localhost" {
		t.Errorf("names not carried over: %v %v", cert.Subject, cert.DNSNames)
	}
	csr.Signature[len(csr.Signature)-1] ^= 0xff
	if _, err := ca.SignCSR(csr, ServerAuth, time.Now().Add(time.Hour)); err == nil {
		t.Error("signed a CSR with a bad signature")
	}
}

// TestCertificateIDMatchesOpenSSL checks the AWS certificate ID against
// `openssl x509 -outform DER | sha256sum`, as an operator would compute it.
func TestCertificateIDMatchesOpenSSL(t *testing.T) {
	openssl := needOpenSSL(t)
	ca, _ := NewCA("test CA", time.Hour)
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, EncodeCertificate(ca.Cert), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", openssl+" x509 -in "+path+" -outform DER | sha256sum").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(out))[0]
	if got := CertificateID(ca.Cert.Raw); got != want {
		t.Fatalf("CertificateID = %s, openssl says %s", got, want)
	}
}

func TestParseCertificates(t *testing.T) {
	ca, _ := NewCA("test CA", time.Hour)
	two := append(EncodeCertificate(ca.Cert), EncodeCertificate(ca.Cert)...)
	if certs, err := ParseCertificates(two); err != nil || len(certs) != 2 {
		t.Fatalf("two certificates: %d, %v", len(certs), err)
	}
	for name, data := range map[string][]byte{
		"empty":   nil,
		"not PEM": []byte("hello"),
		"a key":   []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
		"bad DER": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
	} {
		if _, err := ParseCertificates(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParseCertificates(f *testing.F) {
	ca, _ := NewCA("fuzz CA", time.Hour)
	f.Add(EncodeCertificate(ca.Cert))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}
