//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// ckkECEdwards is CKK_EC_EDWARDS (PKCS#11 3.0), which miekg/pkcs11 v1.1.2
// does not name.
const ckkECEdwards = 0x40

// find returns the objects of class (any class when class < 0) with
// label and/or id, at most limit of them.
func (t *Token) find(s pkcs11.SessionHandle, class int, label string, id []byte, limit int) ([]pkcs11.ObjectHandle, error) {
	var tmpl []*pkcs11.Attribute
	if class >= 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_CLASS, uint(class)))
	}
	if label != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, label))
	}
	if len(id) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, id))
	}
	if err := t.ctx.FindObjectsInit(s, tmpl); err != nil {
		return nil, fmt.Errorf("C_FindObjectsInit: %w", err)
	}
	objs, _, err := t.ctx.FindObjects(s, limit)
	if ferr := t.ctx.FindObjectsFinal(s); err == nil && ferr != nil {
		err = fmt.Errorf("C_FindObjectsFinal: %w", ferr)
	} else if err != nil {
		err = fmt.Errorf("C_FindObjects: %w", err)
	}
	return objs, err
}

// describe names a label/ID pair for messages.
func describe(label string, id []byte) string {
	switch {
	case label != "" && len(id) > 0:
		return fmt.Sprintf("label %q id %x", label, id)
	case label != "":
		return fmt.Sprintf("label %q", label)
	}
	return fmt.Sprintf("id %x", id)
}

// Key is a private key in a token. It implements crypto.Signer and
// crypto.Decrypter and is safe for concurrent use.
type Key struct {
	token      *Token
	obj        pkcs11.ObjectHandle
	name       string // label/ID for messages
	pub        crypto.PublicKey
	canSign    bool // CKA_SIGN
	canDecrypt bool // CKA_DECRYPT
}

// Key finds the private key with label and/or id (one may be empty, not
// both) and reads its public key.
func (t *Token) Key(label string, id []byte) (*Key, error) {
	if label == "" && len(id) == 0 {
		return nil, fmt.Errorf("hsm: token %q: a key needs a label or an ID", t.label)
	}
	name := describe(label, id)
	var k *Key
	err := t.session(func(s pkcs11.SessionHandle) error {
		objs, err := t.find(s, pkcs11.CKO_PRIVATE_KEY, label, id, 2)
		switch {
		case err != nil:
			return err
		case len(objs) == 0:
			return fmt.Errorf("%w with %s", ErrObjectAbsent, name)
		case len(objs) > 1:
			return fmt.Errorf("more than one private key with %s: name it by label and ID", name)
		}
		k, err = t.loadKey(s, objs[0], name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: %w", t.label, err)
	}
	return k, nil
}

// loadKey reads a private key object's type, usage and public key.
func (t *Token) loadKey(s pkcs11.SessionHandle, obj pkcs11.ObjectHandle, name string) (*Key, error) {
	attrs, err := t.ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("key %s: read attributes: %w", name, err)
	}
	keyType, id, label := ulong(attrs[0].Value), attrs[1].Value, string(attrs[2].Value)
	k := &Key{token: t, obj: obj, name: name, canSign: isTrue(attrs[3].Value), canDecrypt: isTrue(attrs[4].Value)}
	if keyType != pkcs11.CKK_RSA && keyType != pkcs11.CKK_EC && keyType != ckkECEdwards {
		return nil, fmt.Errorf("key %s: key type 0x%x: want RSA or EC", name, keyType)
	}
	if k.pub, err = t.publicKey(s, obj, keyType, label, id); err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return k, nil
}

// publicKey finds the public half of a private key: from the public key
// object with the same ID (else label), else from the private key's own
// attributes (SoftHSM keeps the modulus on RSA private keys), else from a
// certificate with the same ID (else label).
func (t *Token) publicKey(s pkcs11.SessionHandle, priv pkcs11.ObjectHandle, keyType uint, label string, id []byte) (crypto.PublicKey, error) {
	read := func(obj pkcs11.ObjectHandle) (crypto.PublicKey, error) {
		if keyType == pkcs11.CKK_RSA {
			return t.rsaPublic(s, obj)
		}
		return t.ecPublic(s, obj, keyType)
	}
	var tried []string
	if obj, ok := t.paired(s, pkcs11.CKO_PUBLIC_KEY, label, id); ok {
		pub, err := read(obj)
		if err == nil {
			return pub, nil
		}
		tried = append(tried, "public key object: "+err.Error())
	} else {
		tried = append(tried, "no public key object with the same ID or label")
	}
	pub, err := read(priv)
	if err == nil {
		return pub, nil
	}
	tried = append(tried, "private key object: "+err.Error())
	if obj, ok := t.paired(s, pkcs11.CKO_CERTIFICATE, label, id); ok {
		attrs, err := t.ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
		if err == nil {
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(attrs[0].Value); err == nil {
				return cert.PublicKey, nil
			}
		}
		tried = append(tried, "certificate: "+err.Error())
	} else {
		tried = append(tried, "no certificate with the same ID or label")
	}
	return nil, fmt.Errorf("cannot read its public key (%s)", strings.Join(tried, "; "))
}

// paired finds the object of class that goes with a private key: the one
// with the same ID, else the one with the same label.
func (t *Token) paired(s pkcs11.SessionHandle, class int, label string, id []byte) (pkcs11.ObjectHandle, bool) {
	if len(id) > 0 {
		if objs, err := t.find(s, class, "", id, 1); err == nil && len(objs) == 1 {
			return objs[0], true
		}
	}
	if label != "" {
		if objs, err := t.find(s, class, label, nil, 1); err == nil && len(objs) == 1 {
			return objs[0], true
		}
	}
	return 0, false
}

func (t *Token) rsaPublic(s pkcs11.SessionHandle, obj pkcs11.ObjectHandle) (*rsa.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("read CKA_MODULUS, CKA_PUBLIC_EXPONENT: %w", err)
	}
	if len(attrs[0].Value) == 0 || len(attrs[1].Value) == 0 {
		return nil, errors.New("no CKA_MODULUS or CKA_PUBLIC_EXPONENT")
	}
	e := new(big.Int).SetBytes(attrs[1].Value)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("RSA public exponent %v out of range", e)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
}

// Named-curve OIDs of CKA_EC_PARAMS. P-224 and P-521 are recognised so
// that ggcore's key checks can name them when refusing them.
var (
	oidP224    = asn1.ObjectIdentifier{1, 3, 132, 0, 33}
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521    = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

// ecPublic reads CKA_EC_PARAMS (a named curve) and CKA_EC_POINT (a DER
// OCTET STRING around the uncompressed point, or the raw point as some
// tokens give it).
func (t *Token) ecPublic(s pkcs11.SessionHandle, obj pkcs11.ObjectHandle, keyType uint) (crypto.PublicKey, error) {
	attrs, err := t.ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("read CKA_EC_PARAMS, CKA_EC_POINT: %w", err)
	}
	return parseECPublic(keyType, attrs[0].Value, attrs[1].Value)
}

func parseECPublic(keyType uint, params, point []byte) (crypto.PublicKey, error) {
	if len(point) == 0 {
		return nil, errors.New("no CKA_EC_POINT")
	}
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(params, &oid); err != nil {
		var name string
		if _, err := asn1.Unmarshal(params, &name); err == nil && keyType == ckkECEdwards && strings.Contains(name, "25519") {
			oid = oidEd25519
		} else {
			return nil, fmt.Errorf("CKA_EC_PARAMS %x is not a named curve", params)
		}
	}
	var curve elliptic.Curve
	switch {
	case oid.Equal(oidEd25519):
		if len(point) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 public key of %d bytes", len(point))
		}
		return ed25519.PublicKey(point), nil
	case oid.Equal(oidP224):
		curve = elliptic.P224()
	case oid.Equal(oidP256):
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		curve = elliptic.P384()
	case oid.Equal(oidP521):
		curve = elliptic.P521()
	default:
		return nil, fmt.Errorf("EC key on curve %s: want P-256 or P-384", oid)
	}
	size := (curve.Params().BitSize + 7) / 8
	if len(point) != 1+2*size || point[0] != 4 {
		return nil, fmt.Errorf("EC point of %d bytes is not an uncompressed %s point", len(point), curve.Params().Name)
	}
	// ParseUncompressedPublicKey also refuses a point that is not on the
	// curve or is the point at infinity.
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("%s point: %w", curve.Params().Name, err)
	}
	return pub, nil
}

// Public returns the key's public key: *rsa.PublicKey or
// *ecdsa.PublicKey (or, for a key ggcore refuses, ed25519.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Usage reports what the key is for: keyspec.Decrypt for a key that may
// decrypt and not sign, keyspec.Sign otherwise.
func (k *Key) Usage() keyspec.Usage {
	if k.canDecrypt && !k.canSign {
		return keyspec.Decrypt
	}
	return keyspec.Sign
}

// ulong decodes a CK_ULONG attribute value (a C unsigned long in native
// byte order, as the module writes it).
func ulong(b []byte) uint {
	switch len(b) {
	case 8:
		return uint(binary.NativeEndian.Uint64(b))
	case 4:
		return uint(binary.NativeEndian.Uint32(b))
	}
	return ^uint(0)
}

func isTrue(b []byte) bool { return len(b) == 1 && b[0] != 0 }
