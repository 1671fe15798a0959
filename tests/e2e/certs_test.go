package e2e

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
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
func certificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// authority is a CA the test can sign with.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// loadAuthority reads a CA certificate and its key (PKCS#1, PKCS#8 or SEC1 PEM).
func loadAuthority(t *testing.T, certFile, keyFile string) authority {
	t.Helper()
	cb, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	blk, _ := pem.Decode(cb)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certFile)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", certFile, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("read CA key: %v", err)
	}
	blk, _ = pem.Decode(kb)
	if blk == nil {
		t.Fatalf("%s: no PEM block", keyFile)
	}
	var key any
	switch blk.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		t.Fatalf("%s: %v", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		t.Fatalf("%s: %T is not a signing key", keyFile, key)
	}
	return authority{cert: cert, key: signer}
}

// newAuthority makes a fresh self-signed CA, unrelated to any bundle.
func newAuthority(t *testing.T, cn string) authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return authority{cert: cert, key: key}
}

// issue signs a client certificate for cn, valid from notBefore to
// notAfter, and writes it with its new key into the test's temp dir.
func (a authority) issue(t *testing.T, cn string, notBefore, notAfter time.Time) identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		t.Fatalf("issue %s: %v", cn, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := identity{
		certFile: filepath.Join(dir, cn+".cert.pem"),
		keyFile:  filepath.Join(dir, cn+".key.pem"),
		der:      der,
	}
	writePEM(t, id.certFile, "CERTIFICATE", der)
	writePEM(t, id.keyFile, "PRIVATE KEY", keyDER)
	return id
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
