// Package keyspec is the one vocabulary for keys that every part of
// ggcore shares: what type a key is (Type), what it may do (Usage), where
// it lives (Backend), and how a TPM is addressed (TPMDevice). The tpm and
// hsm packages, core/keys, ggprov and ggcloud all spell these the same
// way, and each syntax has exactly one parser here.
//
// keyspec imports nothing from ggcore, so the hardware packages (tpm/,
// hsm/) can use it without depending on the core.
package keyspec

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
)

// Type is the type of a key to create. Its values are the words of
// ggprov's --key-type and --type flags.
type Type string

// The key types ggcore creates.
const (
	RSA2048 Type = "rsa2048"
	RSA3072 Type = "rsa3072"
	ECP256  Type = "ecp256"
	ECP384  Type = "ecp384"
)

// Types lists every Type, in the order usage messages show them.
var Types = []Type{RSA2048, RSA3072, ECP256, ECP384}

// ParseType maps a flag or config word to a Type.
func ParseType(s string) (Type, error) {
	for _, t := range Types {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q: want one of %s", s, join(Types))
}

// IsRSA reports whether t is an RSA type.
func (t Type) IsRSA() bool { return t == RSA2048 || t == RSA3072 }

// RSABits is the modulus size of an RSA type, 0 for the others.
func (t Type) RSABits() int {
	switch t {
	case RSA2048:
		return 2048
	case RSA3072:
		return 3072
	}
	return 0
}

// Curve is the curve of an EC type, nil for the others.
func (t Type) Curve() elliptic.Curve {
	switch t {
	case ECP256:
		return elliptic.P256()
	case ECP384:
		return elliptic.P384()
	}
	return nil
}

// Generate creates a key of type t in memory (for keys kept in files).
func (t Type) Generate() (crypto.Signer, error) {
	if bits := t.RSABits(); bits > 0 {
		return rsa.GenerateKey(rand.Reader, bits)
	}
	if c := t.Curve(); c != nil {
		return ecdsa.GenerateKey(c, rand.Reader)
	}
	return nil, fmt.Errorf("keyspec: generate: unknown key type %q", string(t))
}

// Usage says what a key may do. Signing and decryption keys are kept
// apart: a Sign key cannot decrypt and a Decrypt key cannot sign.
type Usage int

// The usages of a key.
const (
	Sign    Usage = iota // TLS client and server keys
	Decrypt              // the SecretsManager key (RSA only)
)

// String returns "sign" or "decrypt".
func (u Usage) String() string {
	switch u {
	case Sign:
		return "sign"
	case Decrypt:
		return "decrypt"
	}
	return fmt.Sprintf("Usage(%d)", int(u))
}

// Usages lists every Usage, in the order usage messages show them.
var Usages = []Usage{Sign, Decrypt}

// ParseUsage maps a flag word ("sign" or "decrypt", as String spells
// them) to a Usage.
func ParseUsage(s string) (Usage, error) {
	for _, u := range Usages {
		if u.String() == s {
			return u, nil
		}
	}
	return 0, fmt.Errorf("unknown key usage %q: want sign or decrypt", s)
}

// Check reports whether a key of type t may have usage u: decryption
// keys must be RSA.
func (u Usage) Check(t Type) error {
	if u == Decrypt && !t.IsRSA() {
		return fmt.Errorf("a decryption key must be RSA, not %s", t)
	}
	return nil
}

// Backend is where a key lives. Its values are the words of ggprov's
// --key-store flag, of logs and of the docs.
type Backend string

// The key backends.
const (
	File   Backend = "file"   // a PEM file on disk
	TPM    Backend = "tpm"    // a TPM 2.0 (TSS2 file or persistent handle)
	PKCS11 Backend = "pkcs11" // a PKCS#11 token
)

// Backends lists every Backend, in the order usage messages show them.
var Backends = []Backend{File, TPM, PKCS11}

// ParseBackend maps a flag word to a Backend.
func ParseBackend(s string) (Backend, error) {
	for _, b := range Backends {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown key store %q: want one of %s", s, join(Backends))
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
