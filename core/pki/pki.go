// Package pki issues and reads the X.509 certificates of a Greengrass
// fleet: the identity CA and group CA, device and core certificates, and
// MQTT server certificates (always signed SHA256-RSA, as v1 required).
package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/ggcore/ggcore/core/keys"
)

// CertificateID is the AWS certificate ID of a certificate: the lowercase
// hex SHA-256 of its DER encoding.
func CertificateID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// CA is a certificate authority: its certificate and its RSA signing key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA creates a self-signed CA with an RSA-2048 key, valid from now for
// validity.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("pki: ca %q: generate key: %w", commonName, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SignatureAlgorithm:    x509.SHA256WithRSA,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: ca %q: sign: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: ca %q: parse: %w", commonName, err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Usage says what a leaf certificate is for.
type Usage int

const (
	// ClientAuth is a device's or core's identity certificate.
	ClientAuth Usage = iota
	// ServerAuth is an MQTT server certificate.
	ServerAuth
	// ClientAndServerAuth is both, for a core that serves devices and
	// connects upstream with one certificate.
	ClientAndServerAuth
)

// Leaf describes a certificate to issue.
type Leaf struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Usage      Usage
	NotBefore  time.Time // zero means now, less five minutes of clock skew
	NotAfter   time.Time
}

// Issue signs a certificate for pub with SHA256-RSA.
func (ca *CA) Issue(pub crypto.PublicKey, l Leaf) (*x509.Certificate, error) {
	if _, ok := ca.Key.Public().(*rsa.PublicKey); !ok {
		return nil, errors.New("pki: issue: the CA key must be RSA (certificates are signed SHA256-RSA)")
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	if l.NotBefore.IsZero() {
		l.NotBefore = time.Now().Add(-5 * time.Minute)
	}
	if !l.NotAfter.After(l.NotBefore) {
		return nil, fmt.Errorf("pki: issue %q: NotAfter %s is not after NotBefore %s", l.CommonName, l.NotAfter, l.NotBefore)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: l.CommonName},
		DNSNames:              l.DNSNames,
		IPAddresses:           l.IPs,
		NotBefore:             l.NotBefore,
		NotAfter:              l.NotAfter,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		SignatureAlgorithm:    x509.SHA256WithRSA,
		AuthorityKeyId:        ca.Cert.SubjectKeyId,
	}
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		// TLS 1.0-1.2 RSA key exchange (compat profile) encrypts to the key.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	switch l.Usage {
	case ClientAuth:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	case ServerAuth:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	case ClientAndServerAuth:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	default:
		return nil, fmt.Errorf("pki: issue %q: unknown usage %d", l.CommonName, l.Usage)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue %q: %w", l.CommonName, err)
	}
	return x509.ParseCertificate(der)
}

// SignCSR checks a certificate request's signature and key type (the key
// types of keys.Check) and issues a certificate for its public key, with
// the request's names.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, usage Usage, notAfter time.Time) (*x509.Certificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: csr %q: bad signature: %w", csr.Subject.CommonName, err)
	}
	if err := keys.Check(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("pki: csr %q: %w", csr.Subject.CommonName, err)
	}
	return ca.Issue(csr.PublicKey, Leaf{
		CommonName: csr.Subject.CommonName, DNSNames: csr.DNSNames, IPs: csr.IPAddresses,
		Usage: usage, NotAfter: notAfter,
	})
}

// EncodeCertificate returns the PEM of one certificate.
func EncodeCertificate(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCertificates decodes every CERTIFICATE block of a PEM file. Blocks
// of any other type, or data that is not PEM, are an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %d is %q, want CERTIFICATE", n, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// ReadCertificates reads a PEM file of one or more certificates.
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// keyID is the SHA-256 of the public key's DER, truncated to 20 bytes.
func keyID(pub crypto.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil
	}
	sum := sha256.Sum256(der)
	return sum[:20]
}
