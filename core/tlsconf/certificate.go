package tlsconf

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrKeyMismatch is what Certificate's error wraps when the leaf
// certificate is not for the key.
var ErrKeyMismatch = errors.New("certificate does not match the key")

// Certificate pairs key with its certificate chain (the leaf first, then
// any intermediates) into the certificate a TLS server serves or a client
// presents. It fails when the chain is empty or the leaf does not certify
// key's public key (ErrKeyMismatch).
//
// The validity period is not checked: that is the caller's business, as
// callers differ (ggcore serves an expired MQTT server certificate, and
// logs it, until the certificate is renewed; ggcloud refuses to start
// with one).
func Certificate(key crypto.Signer, chain []*x509.Certificate) (*tls.Certificate, error) {
	if key == nil {
		return nil, errors.New("tlsconf: certificate: no key")
	}
	if len(chain) == 0 {
		return nil, errors.New("tlsconf: certificate: empty certificate chain")
	}
	for i, c := range chain {
		if c == nil {
			return nil, fmt.Errorf("tlsconf: certificate: chain entry %d is missing", i)
		}
	}
	leaf := chain[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("tlsconf: %w", ErrKeyMismatch)
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, nil
}
