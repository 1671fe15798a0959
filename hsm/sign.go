//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"

	"github.com/miekg/pkcs11"
)

// digestInfo holds the DER DigestInfo prefixes (AlgorithmIdentifier with
// NULL parameters, then the OCTET STRING header) of PKCS#1 v1.5
// signatures, as RFC 8017 section 9.2 lists them.
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// pssHash is the hash mechanism and MGF1 function of RSA-PSS by hash.
var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// Sign signs digest in the token: ECDSA (the token's r||s returned as
// ASN.1 DER, as crypto/tls expects), RSA PKCS#1 v1.5, or RSA-PSS when
// opts is *rsa.PSSOptions (MGF1 with the same hash, salt length = hash
// length). rand is not used: the token has its own.
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.sign(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: sign with key %s: %w", k.token.label, k.name, err)
	}
	return sig, nil
}

func (k *Key) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if !k.canSign {
		return nil, errors.New("the key is a decryption key (CKA_SIGN false) and may not sign")
	}
	if opts == nil {
		return nil, errors.New("no signer options: want a hash")
	}
	h := opts.HashFunc()
	if h == 0 {
		return nil, errors.New("signing unhashed data is not supported: want a digest of SHA-256, SHA-384 or SHA-512")
	}
	if !h.Available() || len(digest) != h.Size() {
		return nil, fmt.Errorf("digest of %d bytes for %v: want a digest of the hash's size", len(digest), h)
	}
	var mech *pkcs11.Mechanism
	data := digest
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		if _, pss := opts.(*rsa.PSSOptions); pss {
			return nil, errors.New("RSA-PSS options for an EC key")
		}
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			ph, ok := pssHash[h]
			if !ok {
				return nil, fmt.Errorf("RSA-PSS with %v: want SHA-256, SHA-384 or SHA-512", h)
			}
			switch pss.SaltLength {
			case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash, h.Size():
			default:
				return nil, fmt.Errorf("RSA-PSS salt length %d: only the hash length (%d bytes) is supported", pss.SaltLength, h.Size())
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(ph[0], ph[1], uint(h.Size())))
		} else {
			prefix, ok := digestInfo[h]
			if !ok {
				return nil, fmt.Errorf("RSA PKCS#1 v1.5 with %v: want SHA-1, SHA-256, SHA-384 or SHA-512", h)
			}
			data = append(slices.Clip(prefix), digest...)
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
		}
	default:
		return nil, fmt.Errorf("cannot sign with a %T key", k.pub)
	}
	var sig []byte
	err := k.token.session(func(s pkcs11.SessionHandle) error {
		if err := k.token.ctx.SignInit(s, []*pkcs11.Mechanism{mech}, k.obj); err != nil {
			return fmt.Errorf("C_SignInit: %w", err)
		}
		var err error
		if sig, err = k.token.ctx.Sign(s, data); err != nil {
			return fmt.Errorf("C_Sign: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if _, isEC := k.pub.(*ecdsa.PublicKey); isEC {
		return ecdsaDER(sig)
	}
	return sig, nil
}

// ecdsaDER turns PKCS#11's raw r||s into the ASN.1 SEQUENCE { r, s }
// that crypto/tls sends.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("ECDSA signature of %d bytes is not r||s", len(raw))
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}

// Decrypt decrypts an RSA PKCS#1 v1.5 ciphertext in the token (opts nil
// or *rsa.PKCS1v15DecryptOptions; OAEP is refused). With SessionKeyLen
// set, a ciphertext that does not decrypt to a key of that length yields
// a random key instead of an error, as crypto/rsa does.
func (k *Key) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("hsm: token %q: decrypt with key %s: %w", k.token.label, k.name, err)
	}
	sessionKeyLen := 0
	switch o := opts.(type) {
	case nil:
	//lint:ignore SA1019 ggcore decrypts RSA PKCS #1 v1.5 on purpose: Greengrass v1 wraps secrets with it (SecretsManager).
	case *rsa.PKCS1v15DecryptOptions:
		if o != nil {
			sessionKeyLen = o.SessionKeyLen
		}
	case *rsa.OAEPOptions:
		return fail(errors.New("RSA-OAEP is not supported: ggcore wraps secrets with RSA PKCS#1 v1.5, as Greengrass v1 does"))
	default:
		return fail(fmt.Errorf("options %T: want nil or *rsa.PKCS1v15DecryptOptions", opts))
	}
	if !k.canDecrypt {
		return fail(errors.New("the key is a signing key (CKA_DECRYPT false) and may not decrypt"))
	}
	if _, isRSA := k.pub.(*rsa.PublicKey); !isRSA {
		return fail(fmt.Errorf("a %T key cannot decrypt: want RSA", k.pub))
	}
	var plain []byte
	err := k.token.session(func(s pkcs11.SessionHandle) error {
		if err := k.token.ctx.DecryptInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, k.obj); err != nil {
			return fmt.Errorf("C_DecryptInit: %w", err)
		}
		var err error
		if plain, err = k.token.ctx.Decrypt(s, msg); err != nil {
			return fmt.Errorf("C_Decrypt: %w", err)
		}
		return nil
	})
	if sessionKeyLen > 0 && !errors.Is(err, errClosed) && !isSessionGone(err) && (err != nil || len(plain) != sessionKeyLen) {
		key := make([]byte, sessionKeyLen)
		if _, rerr := rand.Read(key); rerr != nil {
			return fail(rerr)
		}
		return key, nil
	}
	if err != nil {
		return fail(err)
	}
	return plain, nil
}
