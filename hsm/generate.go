//go:build cgo

package hsm

import (
	"crypto/rand"
	"encoding/asn1"
	"fmt"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// Generate makes a new key pair on the token: the private half private,
// sensitive and non-extractable, a signing key (CKA_SIGN) or a decryption
// key (CKA_DECRYPT, RSA only), never both. Both halves get label and id.
// A nil id gets a fresh random 8-byte CKA_ID (random rather than derived
// from the public key, which is known only after generation). A label or
// ID already on the token is refused with ErrObjectExists, changing
// nothing.
func (t *Token) Generate(label string, id []byte, kt keyspec.Type, u keyspec.Usage) (*Key, error) {
	if label == "" {
		return nil, fmt.Errorf("hsm: token %q: generate: a key needs a label", t.label)
	}
	mech, pubTmpl, err := keyTemplate(kt)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: generate %q: %w", t.label, label, err)
	}
	if u != keyspec.Sign && u != keyspec.Decrypt {
		return nil, fmt.Errorf("hsm: token %q: generate %q: unknown usage %d", t.label, label, u)
	}
	if u == keyspec.Decrypt && mech != pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN {
		return nil, fmt.Errorf("hsm: token %q: generate %q: a decryption key must be RSA (rsa2048, rsa3072), not %s", t.label, label, kt)
	}
	if len(id) == 0 {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("hsm: token %q: generate %q: random ID: %w", t.label, label, err)
		}
	}
	sign, decrypt := u == keyspec.Sign, u == keyspec.Decrypt
	pubTmpl = append(pubTmpl,
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, sign),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, decrypt),
	)
	privTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, sign),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, decrypt),
	}
	name := describe(label, id)
	t.gen.Lock()
	defer t.gen.Unlock()
	var k *Key
	err = t.session(func(s pkcs11.SessionHandle) error {
		for _, probe := range []struct {
			label string
			id    []byte
		}{{label, nil}, {"", id}} {
			objs, err := t.find(s, -1, probe.label, probe.id, 1)
			if err != nil {
				return err
			}
			if len(objs) > 0 {
				return fmt.Errorf("%w: an object with %s is on the token", ErrObjectExists, describe(probe.label, probe.id))
			}
		}
		_, priv, err := t.ctx.GenerateKeyPair(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubTmpl, privTmpl)
		if err != nil {
			return fmt.Errorf("C_GenerateKeyPair: %w", err)
		}
		k, err = t.loadKey(s, priv, name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: generate %s %s: %w", t.label, kt, name, err)
	}
	return k, nil
}

// keyTemplate is the mechanism and public-key attributes of a key type.
func keyTemplate(kt keyspec.Type) (uint, []*pkcs11.Attribute, error) {
	rsaKey := func(bits int) (uint, []*pkcs11.Attribute, error) {
		return pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}), // 65537
		}, nil
	}
	ecKey := func(oid asn1.ObjectIdentifier) (uint, []*pkcs11.Attribute, error) {
		params, err := asn1.Marshal(oid)
		if err != nil {
			return 0, nil, err
		}
		return pkcs11.CKM_EC_KEY_PAIR_GEN, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_EC),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
		}, nil
	}
	switch kt {
	case keyspec.RSA2048:
		return rsaKey(2048)
	case keyspec.RSA3072:
		return rsaKey(3072)
	case keyspec.ECP256:
		return ecKey(oidP256)
	case keyspec.ECP384:
		return ecKey(oidP384)
	}
	return 0, nil, fmt.Errorf("unknown key type %q: want rsa2048, rsa3072, ecp256 or ecp384", kt)
}

// Destroy deletes the key pair (private and public key objects) with
// label and/or id; ErrObjectAbsent if there is no private or public key
// with them. Certificates are left alone.
func (t *Token) Destroy(label string, id []byte) error {
	if label == "" && len(id) == 0 {
		return fmt.Errorf("hsm: token %q: destroy: a key needs a label or an ID", t.label)
	}
	t.gen.Lock()
	defer t.gen.Unlock()
	err := t.session(func(s pkcs11.SessionHandle) error {
		var objs []pkcs11.ObjectHandle
		for _, class := range []int{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			found, err := t.find(s, class, label, id, 16)
			if err != nil {
				return err
			}
			objs = append(objs, found...)
		}
		if len(objs) == 0 {
			return fmt.Errorf("%w with %s", ErrObjectAbsent, describe(label, id))
		}
		for _, o := range objs {
			if err := t.ctx.DestroyObject(s, o); err != nil {
				return fmt.Errorf("C_DestroyObject: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hsm: token %q: destroy %s: %w", t.label, describe(label, id), err)
	}
	return nil
}
