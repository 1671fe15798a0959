// Package keys opens the private keys that ggcore's principals name by
// reference (docs/design.md "Key references") and checks they are of a kind
// the principal accepts.
//
// A Store opens every kind of reference: PEM files (file://), TPM 2.0
// keys (TSS2 PEM files, tpm2:handle=, handle:) through package tpm, and
// PKCS#11 token keys (pkcs11:) through package hsm. Open is the short
// way for plain PEM files.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ggcore/ggcore/core/config"
)

// ErrHardwareKey is returned by Open and ParsePEM for a TPM or token key,
// which only a Store can open.
var ErrHardwareKey = errors.New("a TPM or PKCS#11 key needs a key store")

// ErrUnsupportedKey matches (errors.Is) every refusal of a key's type or
// size.
var ErrUnsupportedKey = errors.New("unsupported key")

// unsupportedError is a refusal of a key; its text is only the reason, so
// that messages read "RSA-1024 key: RSA keys must be at least 2048 bits".
type unsupportedError struct{ reason string }

func (e *unsupportedError) Error() string        { return e.reason }
func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupportedKey }

func unsupported(format string, args ...any) error {
	return &unsupportedError{reason: fmt.Sprintf(format, args...)}
}

// Open returns a signer for the plain PEM key file named by ref
// (file:///path). For RSA keys the signer also implements
// crypto.Decrypter. TPM and token keys need a Store.
func Open(ref string) (crypto.Signer, error) {
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if r.Scheme != config.SchemeFile {
		return nil, fmt.Errorf("keys: %s: %w", r, ErrHardwareKey)
	}
	return openFile(r.Path)
}

func openFile(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	key, err := ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	return key, nil
}

// ParsePEM parses one PEM private key: PKCS#1 "RSA PRIVATE KEY", PKCS#8
// "PRIVATE KEY" or SEC1 "EC PRIVATE KEY" (optionally after the "EC
// PARAMETERS" block openssl ecparam writes). It refuses encrypted keys,
// more than one key, and key types ggcore does not accept (see Check),
// naming what it found.
func ParsePEM(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block: want a PEM private key")
	}
	if block.Type == "EC PARAMETERS" {
		// openssl ecparam -genkey writes the curve before the key; the key
		// names its curve again, so the parameters block is redundant.
		if next, more := pem.Decode(rest); next != nil && next.Type == "EC PRIVATE KEY" {
			block, rest = next, more
		}
	}
	if extra, _ := pem.Decode(rest); extra != nil {
		return nil, fmt.Errorf("more than one PEM block (%q, then %q): want one private key", block.Type, extra.Type)
	}
	if block.Headers["Proc-Type"] != "" || strings.Contains(block.Type, "ENCRYPTED") {
		return nil, unsupported("encrypted PEM (%s): ggcore cannot prompt for a passphrase; store the key unencrypted with mode 0600, or in a TPM or token", block.Type)
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "TSS2 PRIVATE KEY":
		return nil, fmt.Errorf("TPM-wrapped key (TSS2 PRIVATE KEY): %w", ErrHardwareKey)
	case "DSA PRIVATE KEY":
		return nil, unsupported("DSA key: want RSA >= 2048 or EC P-256/P-384")
	default:
		return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
	}
	if err != nil {
		if found := foundKey(block.Type, block.Bytes); found != "" {
			return nil, refuse(found)
		}
		return nil, fmt.Errorf("%s: %w", block.Type, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		if found := foundKey(block.Type, block.Bytes); found != "" {
			return nil, refuse(found)
		}
		return nil, unsupported("%T cannot sign: want RSA >= 2048 or EC P-256/P-384", key)
	}
	if err := Check(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// refuse is the refusal of a key found to be of a kind ggcore does not
// accept; found is foundKey's description.
func refuse(found string) error {
	if strings.HasPrefix(found, "EC key ") {
		return unsupported("%s: want P-256 or P-384", found)
	}
	return unsupported("%s: want RSA >= 2048 or EC P-256/P-384", found)
}

// Check refuses public keys of a type or size ggcore does not accept:
// RSA below 2048 bits, EC curves other than P-256 and P-384, Ed25519 and
// anything else.
func Check(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < 2048 {
			return unsupported("RSA-%d key: RSA keys must be at least 2048 bits", n)
		}
	case *ecdsa.PublicKey:
		if c := k.Curve; c != elliptic.P256() && c != elliptic.P384() {
			return unsupported("EC key on %s: want P-256 or P-384", c.Params().Name)
		}
	case ed25519.PublicKey:
		return unsupported("Ed25519 key: want RSA >= 2048 or EC P-256/P-384, the key types of Greengrass v1")
	default:
		return unsupported("%T: want RSA >= 2048 or EC P-256/P-384", pub)
	}
	return nil
}

// Describe names a public key's type for messages: "RSA-2048", "EC P-256".
func Describe(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	}
	return fmt.Sprintf("%T", pub)
}

// CheckPrincipal checks that pub suits principal ("IoTCertificate",
// "MQTTServerCertificate" or "SecretsManager"); SecretsManager wraps its
// data key with RSA PKCS#1 v1.5 and so requires RSA.
func CheckPrincipal(principal string, pub crypto.PublicKey) error {
	if err := Check(pub); err != nil {
		return fmt.Errorf("%s: %w", principal, err)
	}
	if _, isRSA := pub.(*rsa.PublicKey); principal == "SecretsManager" && !isRSA {
		return unsupported("%s key given, SecretsManager requires RSA >= 2048", Describe(pub))
	}
	return nil
}

// MarshalPEM encodes a private key as PKCS#8 "PRIVATE KEY" PEM, which
// openssl, mosquitto and the AWS SDKs all read.
func MarshalPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keys: marshal: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
