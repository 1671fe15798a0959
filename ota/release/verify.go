package release

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Verifier holds the trusted release public keys. Its zero value and nil
// trust nothing.
type Verifier struct {
	keys []trustedKey
}

type trustedKey struct {
	id  string
	pub crypto.PublicKey
}

// NewVerifier trusts keys: *ecdsa.PublicKey on P-256 or
// ed25519.PublicKey.
func NewVerifier(keys ...crypto.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("release: no trusted keys given")
	}
	v := &Verifier{}
	for _, k := range keys {
		id, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		if !v.trusts(id) {
			v.keys = append(v.keys, trustedKey{id: id, pub: k})
		}
	}
	return v, nil
}

// LoadVerifier trusts the PUBLIC KEY blocks of the PEM files (each holds
// one or more).
func LoadVerifier(pemFiles ...string) (*Verifier, error) {
	if len(pemFiles) == 0 {
		return nil, errors.New("release: no public key files given")
	}
	var keys []crypto.PublicKey
	for _, name := range pemFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		ks, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("release: %s: %w", name, err)
		}
		keys = append(keys, ks...)
	}
	return NewVerifier(keys...)
}

// ParsePublicKeys parses the PEM "PUBLIC KEY" blocks of data; anything
// else, or no block at all, is an error.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if len(keys) == 0 {
				return nil, errors.New("no PEM block: want a PEM PUBLIC KEY")
			}
			return keys, nil
		}
		if block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY (a release public key, not a private key or certificate)", block.Type)
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PUBLIC KEY: %w", err)
		}
		if err := checkKey(k); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
}

// KeyIDs lists the ids of the trusted keys.
func (v *Verifier) KeyIDs() []string {
	if v == nil {
		return nil
	}
	ids := make([]string, len(v.keys))
	for i, k := range v.keys {
		ids[i] = k.id
	}
	return ids
}

func (v *Verifier) trusts(id string) bool {
	for _, k := range v.keys {
		if k.id == id {
			return true
		}
	}
	return false
}

// KeyID is the key id of a release public key: the first 16 hex digits of
// SHA-256 of its SubjectPublicKeyInfo DER.
func KeyID(pub crypto.PublicKey) (string, error) {
	if err := checkKey(pub); err != nil {
		return "", err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("release: key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:8]), nil
}

// checkKey refuses public keys other than ECDSA P-256 and Ed25519.
func checkKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("release: EC key on %s: want P-256 or Ed25519", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("release: Ed25519 key of %d bytes", len(k))
		}
	default:
		return fmt.Errorf("release: %T key: want ECDSA P-256 or Ed25519", pub)
	}
	return nil
}

// signedMessage is what a release signature signs.
func signedMessage(manifest []byte) []byte {
	msg := make([]byte, 0, len(SignatureContext)+len(manifest))
	return append(append(msg, SignatureContext...), manifest...)
}

// verify checks sig over manifest with the trusted keys, the one the
// manifest's keyId names first, and returns the id of the key it verifies
// with.
func (v *Verifier) verify(manifest, sig []byte) (string, error) {
	var claim struct {
		KeyID string `json:"keyId"`
	}
	claimed := json.Unmarshal(manifest, &claim) == nil && claim.KeyID != ""
	if v == nil || len(v.keys) == 0 {
		return "", fmt.Errorf("%w: no trusted release keys", ErrUnknownKey)
	}
	msg := signedMessage(manifest)
	digest := sha256.Sum256(msg)
	order := make([]trustedKey, 0, len(v.keys))
	for _, k := range v.keys {
		if claimed && k.id == claim.KeyID {
			order = append([]trustedKey{k}, order...)
		} else {
			order = append(order, k)
		}
	}
	for _, k := range order {
		if verifyWith(k.pub, msg, digest[:], sig) {
			return k.id, nil
		}
	}
	if claimed && !v.trusts(claim.KeyID) {
		return "", fmt.Errorf("%w: signed by key %q; trusted: %s", ErrUnknownKey, claim.KeyID, strings.Join(v.KeyIDs(), ", "))
	}
	return "", fmt.Errorf("%w: the signature does not verify with any trusted key (%s)", ErrBadSignature, strings.Join(v.KeyIDs(), ", "))
}

func verifyWith(pub crypto.PublicKey, msg, digest, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return ecdsa.VerifyASN1(k, digest, sig)
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig)
	}
	return false
}

// Sign signs manifest bytes with signer as the format wants: ECDSA P-256
// over SHA-256 (ASN.1 DER) or Ed25519, by the signer's key type. It checks
// the signature it got, so a faulty token cannot produce a bad release.
func Sign(manifest []byte, signer crypto.Signer) ([]byte, error) {
	pub := signer.Public()
	if err := checkKey(pub); err != nil {
		return nil, fmt.Errorf("release: sign: %w", err)
	}
	msg := signedMessage(manifest)
	digest := sha256.Sum256(msg)
	var sig []byte
	var err error
	switch pub.(type) {
	case *ecdsa.PublicKey:
		sig, err = signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	case ed25519.PublicKey:
		sig, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
	}
	if err != nil {
		return nil, fmt.Errorf("release: sign: %w", err)
	}
	if len(sig) == 0 || len(sig) > MaxSignatureSize || !verifyWith(pub, msg, digest[:], sig) {
		return nil, errors.New("release: sign: the signer returned a signature that does not verify with its public key")
	}
	return sig, nil
}
