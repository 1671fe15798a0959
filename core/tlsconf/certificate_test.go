package tlsconf

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
)

func TestCertificate(t *testing.T) {
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	newKey := func(kt keyspec.Type) crypto.Signer {
		key, err := kt.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	issue := func(key crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
		c, err := ca.Issue(key.Public(), pki.Leaf{CommonName: "server", DNSNames: []string{"localhost"},
			Usage: pki.ServerAuth, NotBefore: notBefore, NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	ecKey, rsaKey, otherKey := newKey(keyspec.ECP256), newKey(keyspec.RSA2048), newKey(keyspec.ECP256)
	ecLeaf := issue(ecKey, time.Time{}, now.Add(time.Hour))
	rsaLeaf := issue(rsaKey, time.Time{}, now.Add(time.Hour))
	expired := issue(ecKey, now.Add(-2*time.Hour), now.Add(-time.Hour))

	tests := []struct {
		name  string
		key   crypto.Signer
		chain []*x509.Certificate
		fails bool
		is    error // when it fails: the error it wraps, if any
	}{
		{name: "EC key and its leaf", key: ecKey, chain: []*x509.Certificate{ecLeaf}},
		{name: "RSA key, its leaf and the CA", key: rsaKey, chain: []*x509.Certificate{rsaLeaf, ca.Cert}},
		// The validity period is the caller's business.
		{name: "expired leaf of the key", key: ecKey, chain: []*x509.Certificate{expired}},
		{name: "leaf of another key", key: otherKey, chain: []*x509.Certificate{ecLeaf}, fails: true, is: ErrKeyMismatch},
		{name: "leaf of another key type", key: rsaKey, chain: []*x509.Certificate{ecLeaf}, fails: true, is: ErrKeyMismatch},
		{name: "the key's certificate second in the chain", key: ecKey, chain: []*x509.Certificate{ca.Cert, ecLeaf}, fails: true, is: ErrKeyMismatch},
		{name: "empty chain", key: ecKey, fails: true},
		{name: "missing chain entry", key: ecKey, chain: []*x509.Certificate{ecLeaf, nil}, fails: true},
		{name: "no key", chain: []*x509.Certificate{ecLeaf}, fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := Certificate(tt.key, tt.chain)
			if tt.fails {
				if err == nil {
					t.Fatal("Certificate paired them; want an error")
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Fatalf("Certificate: %v; want an error wrapping %v", err, tt.is)
				}
				if tc != nil {
					t.Fatal("Certificate returned a certificate with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Certificate: %v", err)
			}
			if tc.PrivateKey != tt.key || tc.Leaf != tt.chain[0] || len(tc.Certificate) != len(tt.chain) {
				t.Fatalf("Certificate = key %T, leaf set %v, %d certificates; want the key, the first certificate as leaf and %d certificates",
					tc.PrivateKey, tc.Leaf != nil, len(tc.Certificate), len(tt.chain))
			}
			for i, c := range tt.chain {
				if string(tc.Certificate[i]) != string(c.Raw) {
					t.Errorf("certificate %d is not chain entry %d", i, i)
				}
			}
		})
	}
}

// TestCertificateServes checks that a paired certificate is one a TLS
// client accepts, chain and all.
func TestCertificateServes(t *testing.T) {
	root, err := pki.NewCA("root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := root.Issue(key.Public(), pki.Leaf{CommonName: "server", DNSNames: []string{"localhost"},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tc, err := Certificate(key, []*x509.Certificate{leaf})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	go func() {
		_ = tls.Server(sConn, &tls.Config{Certificates: []tls.Certificate{*tc}}).Handshake()
		sConn.Close()
	}()
	if err := tls.Client(cConn, &tls.Config{RootCAs: pool, ServerName: "localhost"}).Handshake(); err != nil {
		t.Fatalf("handshake with the paired certificate: %v", err)
	}
}
