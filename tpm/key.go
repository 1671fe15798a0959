package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// Key is a key loaded in a TPM. It implements crypto.Signer for Sign keys
// and crypto.Decrypter for RSA Decrypt keys, safe for concurrent use.
type Key struct {
	t      *TPM
	pub    crypto.PublicKey
	usage  keyspec.Usage
	name   tpm2.TPM2BName // the TPM name of the key (hash of its public area)
	scheme tpm2.TPMAlgID  // the key's own scheme; TPMAlgNull lets each use choose

	persistent bool
	blob       *Blob // the wrapped key, to load it again after a TPM reset

	// Guarded by t.mu.
	handle  tpm2.TPMHandle    // 0 while swapped out
	last    tpm2.TPMHandle    // the handle last held, for messages
	saved   *tpm2.TPMSContext // saved context of a transient key
	lastUse uint64            // t.tick at the last use
}

var (
	_ crypto.Signer    = (*Key)(nil)
	_ crypto.Decrypter = (*Key)(nil)
)

// newKey checks that pub describes a key ggcore can use (an unrestricted
// RSA >= 2048 or NIST P-256/P-384 key that signs, or an RSA key that
// decrypts, usable with its authorization value) and returns its Key.
func newKey(pub *tpm2.TPMTPublic) (*Key, error) {
	a := pub.ObjectAttributes
	switch {
	case a.Restricted:
		return nil, errors.New("restricted key (a storage, attestation or other restricted key), not a signing or decryption key ggcore can use")
	case !a.SignEncrypt && !a.Decrypt:
		return nil, errors.New("the object neither signs nor decrypts")
	case !a.UserWithAuth:
		return nil, errors.New("the key can be used only with a policy session (userWithAuth clear); ggcore uses keys with their empty authorization value")
	}
	k := &Key{usage: keyspec.Sign, scheme: tpm2.TPMAlgNull}
	if !a.SignEncrypt {
		k.usage = keyspec.Decrypt
	}
	switch pub.Type {
	case tpm2.TPMAlgRSA:
		parms, err := pub.Parameters.RSADetail()
		if err != nil {
			return nil, fmt.Errorf("RSA parameters: %w", err)
		}
		n, err := pub.Unique.RSA()
		if err != nil {
			return nil, fmt.Errorf("RSA modulus: %w", err)
		}
		if len(n.Buffer) == 0 || n.Buffer[0] == 0 {
			return nil, errors.New("RSA modulus missing or not minimal")
		}
		bits := len(n.Buffer) * 8
		if bits != int(parms.KeyBits) {
			return nil, fmt.Errorf("RSA modulus of %d bits in a %d-bit key", bits, parms.KeyBits)
		}
		if bits < 2048 || bits > 4096 {
			return nil, fmt.Errorf("RSA-%d key (want 2048 to 4096 bits)", bits)
		}
		e := int(parms.Exponent)
		if e == 0 {
			e = 65537
		}
		if e < 3 || e%2 == 0 {
			return nil, fmt.Errorf("RSA exponent %d is invalid", e)
		}
		k.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n.Buffer), E: e}
		k.scheme = parms.Scheme.Scheme
		switch k.scheme {
		case tpm2.TPMAlgNull:
		case tpm2.TPMAlgRSASSA, tpm2.TPMAlgRSAPSS:
			if k.usage != keyspec.Sign {
				return nil, fmt.Errorf("decryption key with signature scheme %s", algName(k.scheme))
			}
		case tpm2.TPMAlgRSAES:
			if k.usage != keyspec.Decrypt {
				return nil, fmt.Errorf("signing key with encryption scheme %s", algName(k.scheme))
			}
		default:
			return nil, fmt.Errorf("the key is fixed to scheme %s (want null, RSASSA, RSAPSS or RSAES; SecretsManager needs PKCS#1 v1.5)", algName(k.scheme))
		}
	case tpm2.TPMAlgECC:
		if k.usage != keyspec.Sign {
			return nil, errors.New("EC key that only decrypts (ECDH): ggcore's decryption keys are RSA")
		}
		parms, err := pub.Parameters.ECCDetail()
		if err != nil {
			return nil, fmt.Errorf("ECC parameters: %w", err)
		}
		var curve elliptic.Curve
		switch parms.CurveID {
		case tpm2.TPMECCNistP256:
			curve = elliptic.P256()
		case tpm2.TPMECCNistP384:
			curve = elliptic.P384()
		default:
			return nil, fmt.Errorf("EC curve 0x%04x is not supported (want NIST P-256 or P-384)", uint16(parms.CurveID))
		}
		pt, err := pub.Unique.ECC()
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(pt.X.Buffer) > size || len(pt.Y.Buffer) > size {
			return nil, errors.New("EC point coordinates too long for the curve")
		}
		raw := make([]byte, 1+2*size)
		raw[0] = 4
		copy(raw[1+size-len(pt.X.Buffer):1+size], pt.X.Buffer)
		copy(raw[1+2*size-len(pt.Y.Buffer):], pt.Y.Buffer)
		ecPub, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		k.pub = ecPub
		k.scheme = parms.Scheme.Scheme
		if k.scheme != tpm2.TPMAlgNull && k.scheme != tpm2.TPMAlgECDSA {
			return nil, fmt.Errorf("the key is fixed to scheme %s (want null or ECDSA)", algName(k.scheme))
		}
	default:
		return nil, fmt.Errorf("object type %s is not an RSA or ECC key", algName(pub.Type))
	}
	name, err := tpm2.ObjectName(pub)
	if err != nil {
		return nil, fmt.Errorf("name of the key: %w", err)
	}
	k.name = *name
	return k, nil
}

// label names k in errors.
func (k *Key) label() string { return fmt.Sprintf("key 0x%08x", uint32(k.last)) }

// hashAlg maps the hashes a TPM signature may use.
func hashAlg(h crypto.Hash) (tpm2.TPMIAlgHash, bool) {
	switch h {
	case crypto.SHA256:
		return tpm2.TPMAlgSHA256, true
	case crypto.SHA384:
		return tpm2.TPMAlgSHA384, true
	case crypto.SHA512:
		return tpm2.TPMAlgSHA512, true
	}
	return 0, false
}

func (k *Key) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.signErr(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("tpm: sign with %s: %w", k.label(), err)
	}
	return sig, nil
}

func (k *Key) signErr(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.usage != keyspec.Sign {
		return nil, errors.New("it is a decryption key; ggcore keeps signing and decryption keys apart")
	}
	if opts == nil {
		return nil, errors.New("no signer options (want the digest's hash)")
	}
	h := opts.HashFunc()
	alg, ok := hashAlg(h)
	if !ok {
		return nil, fmt.Errorf("hash %v is not supported (want SHA-256, SHA-384 or SHA-512)", h)
	}
	if len(digest) != h.Size() {
		return nil, fmt.Errorf("digest is %d bytes, want %d for %v", len(digest), h.Size(), h)
	}
	var scheme tpm2.TPMTSigScheme
	pss, isPSS := opts.(*rsa.PSSOptions)
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		scheme = tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		}
	case *rsa.PublicKey:
		if isPSS {
			switch pss.SaltLength {
			case rsa.PSSSaltLengthAuto, rsa.PSSSaltLengthEqualsHash, h.Size():
			default:
				return nil, fmt.Errorf("RSA-PSS salt length %d is not supported: the TPM's salt is as long as the hash (%d bytes)", pss.SaltLength, h.Size())
			}
			scheme = tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgRSAPSS,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSAPSS, &tpm2.TPMSSchemeHash{HashAlg: alg}),
			}
		} else {
			scheme = tpm2.TPMTSigScheme{
				Scheme:  tpm2.TPMAlgRSASSA,
				Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
			}
		}
	}
	if k.scheme != tpm2.TPMAlgNull && k.scheme != scheme.Scheme {
		return nil, fmt.Errorf("the key is fixed to scheme %s, cannot sign with %s", algName(k.scheme), algName(scheme.Scheme))
	}

	t := k.t
	t.mu.Lock()
	var rsp *tpm2.SignResponse
	h0, err := t.use(k)
	if err == nil {
		err = t.run(k, func() (err error) {
			rsp, err = tpm2.Sign{
				KeyHandle: tpm2.NamedHandle{Handle: h0, Name: k.name},
				Digest:    tpm2.TPM2BDigest{Buffer: digest},
				InScheme:  scheme,
				// Unrestricted keys sign any digest: a null ticket.
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(t.tr)
			return err
		})
		if err != nil {
			err = fmt.Errorf("TPM2_Sign: %w", err)
		}
	}
	t.mu.Unlock()
	if err != nil {
		return nil, err
	}

	switch pub := k.pub.(type) {
	case *ecdsa.PublicKey:
		s, err := rsp.Signature.Signature.ECDSA()
		if err != nil {
			return nil, fmt.Errorf("TPM2_Sign answer: %w", err)
		}
		return asn1.Marshal(struct{ R, S *big.Int }{
			new(big.Int).SetBytes(s.SignatureR.Buffer),
			new(big.Int).SetBytes(s.SignatureS.Buffer),
		})
	case *rsa.PublicKey:
		var s *tpm2.TPMSSignatureRSA
		if isPSS {
			s, err = rsp.Signature.Signature.RSAPSS()
		} else {
			s, err = rsp.Signature.Signature.RSASSA()
		}
		if err != nil {
			return nil, fmt.Errorf("TPM2_Sign answer: %w", err)
		}
		sig := leftPad(s.Sig.Buffer, pub.Size())
		if isPSS {
			// TPMs differ in their PSS salt length (the spec once said
			// "as long as fits"); TLS 1.3 needs it equal to the hash
			// length. Verifying costs a public-key operation and turns a
			// mismatch into a clear error instead of a failed handshake.
			want := pss.SaltLength
			if want == h.Size() {
				want = rsa.PSSSaltLengthEqualsHash
			}
			if err := rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: want}); err != nil {
				return nil, fmt.Errorf("this TPM's RSA-PSS signature does not verify with the requested salt length (its salt length differs from the hash length): %w", err)
			}
		}
		return sig, nil
	}
	return nil, errors.New("unreachable: unknown public key type")
}

// leftPad returns b left-padded with zeros to n bytes.
func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	out := make([]byte, n)
	copy(out[n-len(b):], b)
	return out
}

func (k *Key) decrypt(msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	out, err := k.decryptErr(msg, opts)
	if err != nil {
		return nil, fmt.Errorf("tpm: decrypt with %s: %w", k.label(), err)
	}
	return out, nil
}

func (k *Key) decryptErr(msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	if k.usage != keyspec.Decrypt {
		return nil, errors.New("it is a signing key; ggcore keeps signing and decryption keys apart")
	}
	sessionKeyLen := 0
	switch o := opts.(type) {
	case nil:
	//lint:ignore SA1019 ggcore decrypts RSA PKCS #1 v1.5 on purpose: Greengrass v1 wraps secrets with it (SecretsManager).
	case *rsa.PKCS1v15DecryptOptions:
		sessionKeyLen = o.SessionKeyLen
	case *rsa.OAEPOptions:
		return nil, errors.New("RSA-OAEP is not supported: ggcore's decryption keys use RSA PKCS#1 v1.5 (SecretsManager, as Greengrass v1)")
	default:
		return nil, fmt.Errorf("decrypter options %T are not supported (want nil or *rsa.PKCS1v15DecryptOptions)", opts)
	}
	pub := k.pub.(*rsa.PublicKey) // Decrypt keys are RSA (newKey)
	if len(msg) != pub.Size() {
		return nil, fmt.Errorf("ciphertext is %d bytes, want %d", len(msg), pub.Size())
	}

	t := k.t
	t.mu.Lock()
	var rsp *tpm2.RSADecryptResponse
	h, err := t.use(k)
	if err == nil {
		err = t.run(k, func() (err error) {
			rsp, err = tpm2.RSADecrypt{
				KeyHandle: tpm2.AuthHandle{
					Handle: h,
					Name:   k.name,
					// A one-shot HMAC session salted with the SRK: only
					// this process and the TPM know its key, and the
					// response parameter (the plaintext) is AES-CFB
					// encrypted with it on the way back.
					Auth: tpm2.HMAC(tpm2.TPMAlgSHA256, 16,
						tpm2.Salted(tpm2.TPMHandle(SRKHandle), t.srkPub),
						tpm2.AESEncryption(128, tpm2.EncryptOut)),
				},
				CipherText: tpm2.TPM2BPublicKeyRSA{Buffer: msg},
				InScheme: tpm2.TPMTRSADecrypt{
					Scheme:  tpm2.TPMAlgRSAES,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSAES, &tpm2.TPMSEncSchemeRSAES{}),
				},
			}.Execute(t.tr)
			return err
		})
	}
	t.mu.Unlock()
	if err != nil {
		// A ciphertext whose PKCS#1 v1.5 padding is wrong (made for
		// another key, or corrupt) is refused with TPM_RC_VALUE, or by
		// libtpms (swtpm) with TPM_RC_FAILURE without entering failure
		// mode.
		badPadding := errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCFailure)
		switch {
		case badPadding && sessionKeyLen > 0:
			// As crypto/rsa: with a session key length, bad padding
			// yields a random key, not an error an attacker can tell.
			return randomKey(sessionKeyLen)
		case badPadding:
			return nil, fmt.Errorf("TPM2_RSA_Decrypt (the TPM's answer to a bad ciphertext, e.g. one made for another key): %w", err)
		}
		return nil, fmt.Errorf("TPM2_RSA_Decrypt: %w", err)
	}
	out := rsp.Message.Buffer
	if sessionKeyLen > 0 && len(out) != sessionKeyLen {
		return randomKey(sessionKeyLen)
	}
	return out, nil
}

func randomKey(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	return b, nil
}

// algName names the TPM algorithms that appear in errors.
func algName(a tpm2.TPMAlgID) string {
	switch a {
	case tpm2.TPMAlgRSA:
		return "RSA"
	case tpm2.TPMAlgECC:
		return "ECC"
	case tpm2.TPMAlgKeyedHash:
		return "KEYEDHASH"
	case tpm2.TPMAlgSymCipher:
		return "SYMCIPHER"
	case tpm2.TPMAlgRSASSA:
		return "RSASSA"
	case tpm2.TPMAlgRSAPSS:
		return "RSAPSS"
	case tpm2.TPMAlgRSAES:
		return "RSAES"
	case tpm2.TPMAlgOAEP:
		return "OAEP"
	case tpm2.TPMAlgECDSA:
		return "ECDSA"
	case tpm2.TPMAlgNull:
		return "NULL"
	}
	return fmt.Sprintf("0x%04x", uint16(a))
}
