//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// modules is the process's registry of loaded PKCS#11 modules by path.
// It is the package's one piece of package-level state, because PKCS#11
// itself is process-global: C_Initialize may run once per module per
// process, and C_Finalize ends every user's sessions and logins at once.
// Every OpenModule of a path shares one initialisation; the last Close
// finalises it.
var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: make(map[string]*module)}

// module is one initialised PKCS#11 module, shared by every Module value
// opened on its path.
type module struct {
	path string
	ctx  *pkcs11.Ctx
	refs int

	mu     sync.Mutex
	tokens map[string]*Token // by label: one login state per token
}

// ckkECEdwards is CKK_EC_EDWARDS (PKCS#11 3.0), which miekg/pkcs11 v1.1.2
// does not name.
const ckkECEdwards = 0x40

// maxSessions bounds the sessions a Token keeps open; callers beyond it
// wait for a free one.
const maxSessions = 16

// Module is a handle on a loaded, initialised PKCS#11 module.
type Module struct {
	m    *module
	once sync.Once
}

// OpenModule loads the PKCS#11 module at path and initialises it, once
// per process however many times it is opened.
func OpenModule(path string) (*Module, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("hsm: module %q: want an absolute path", path)
	}
	path = filepath.Clean(path)
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[path]; m != nil {
		m.refs++
		return &Module{m: m}, nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("hsm: module %s: %w", path, err)
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("hsm: module %s: cannot load it as a PKCS#11 module (dlopen or C_GetFunctionList failed)", path)
	}
	if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx.Destroy()
		return nil, fmt.Errorf("hsm: module %s: C_Initialize: %w", path, err)
	}
	m := &module{path: path, ctx: ctx, refs: 1, tokens: make(map[string]*Token)}
	modules.byPath[path] = m
	return &Module{m: m}, nil
}

// Close releases this handle; the last handle on a module closes every
// session and finalises the module. Keys from it stop working then. It is
// safe to call more than once.
func (mod *Module) Close() error {
	var err error
	mod.once.Do(func() {
		modules.Lock()
		defer modules.Unlock()
		m := mod.m
		if m.refs--; m.refs > 0 {
			return
		}
		delete(modules.byPath, m.path)
		m.mu.Lock()
		for _, t := range m.tokens {
			_ = m.ctx.CloseAllSessions(t.slot)
		}
		m.tokens = nil
		m.mu.Unlock()
		if e := m.ctx.Finalize(); e != nil {
			err = fmt.Errorf("hsm: module %s: C_Finalize: %w", m.path, e)
		}
		m.ctx.Destroy()
	})
	return err
}

// Token is a logged-in token with a pool of sessions. It is safe for
// concurrent use: each operation takes a session of its own.
type Token struct {
	ctx   *pkcs11.Ctx
	slot  uint
	label string
	pin   string

	sessions chan pkcs11.SessionHandle // idle sessions
	mu       sync.Mutex
	open     int // sessions open, idle or in use
}

// Token finds the token labelled label (by label: slot numbers change)
// and logs in as the user with pin, once per token per process.
func (mod *Module) Token(label, pin string) (*Token, error) {
	m := mod.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if t := m.tokens[label]; t != nil {
		if t.pin != pin {
			return nil, fmt.Errorf("hsm: token %q: %w (the token is already open with another PIN)", label, ErrWrongPIN)
		}
		return t, nil
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: C_GetSlotList: %w", m.path, err)
	}
	var found []string
	for _, slot := range slots {
		info, err := m.ctx.GetTokenInfo(slot)
		if err != nil {
			continue
		}
		l := strings.TrimRight(info.Label, " \x00")
		if l != label {
			found = append(found, fmt.Sprintf("%q", l))
			continue
		}
		t := &Token{ctx: m.ctx, slot: slot, label: label, pin: pin, sessions: make(chan pkcs11.SessionHandle, maxSessions)}
		s, err := t.openSession()
		if err != nil {
			return nil, err
		}
		if err := m.ctx.Login(s, pkcs11.CKU_USER, pin); err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			t.closeSession(s)
			switch {
			case isCode(err, pkcs11.CKR_PIN_INCORRECT):
				return nil, fmt.Errorf("hsm: token %q: log in: %w (CKR_PIN_INCORRECT)", label, ErrWrongPIN)
			case isCode(err, pkcs11.CKR_PIN_LOCKED):
				return nil, fmt.Errorf("hsm: token %q: log in: the user PIN is locked after too many wrong PINs; the security officer must reset it", label)
			}
			return nil, fmt.Errorf("hsm: token %q: log in: %w", label, err)
		}
		t.sessions <- s
		m.tokens[label] = t
		return t, nil
	}
	slices.Sort(found)
	have := "none"
	if len(found) > 0 {
		have = strings.Join(found, ", ")
	}
	return nil, fmt.Errorf("hsm: %w labelled %q in module %s (tokens found: %s)", ErrTokenAbsent, label, m.path, have)
}

func (t *Token) openSession() (pkcs11.SessionHandle, error) {
	s, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("hsm: token %q: open session: %w", t.label, err)
	}
	t.mu.Lock()
	t.open++
	t.mu.Unlock()
	return s, nil
}

func (t *Token) closeSession(s pkcs11.SessionHandle) {
	_ = t.ctx.CloseSession(s)
	t.mu.Lock()
	t.open--
	t.mu.Unlock()
}

// session runs f with a session of its own: an idle one, a new one while
// fewer than maxSessions are open, or the next one freed. A session the
// token reports closed is dropped from the pool.
func (t *Token) session(f func(pkcs11.SessionHandle) error) error {
	var s pkcs11.SessionHandle
	select {
	case s = <-t.sessions:
	default:
		t.mu.Lock()
		grow := t.open < maxSessions
		t.mu.Unlock()
		if grow {
			var err error
			if s, err = t.openSession(); err != nil {
				return err
			}
		} else {
			s = <-t.sessions
		}
	}
	err := f(s)
	if isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isCode(err, pkcs11.CKR_SESSION_CLOSED) {
		t.closeSession(s)
		return err
	}
	t.sessions <- s
	return err
}

// find returns the objects of class (or any class when class < 0) with
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
		return nil, err
	}
	objs, _, err := t.ctx.FindObjects(s, limit)
	if ferr := t.ctx.FindObjectsFinal(s); err == nil {
		err = ferr
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
// crypto.Decrypter, safe for concurrent use.
type Key struct {
	token *Token
	obj   pkcs11.ObjectHandle
	name  string
	pub   crypto.PublicKey
	usage Usage
}

// Key finds the private key with label and/or id (one may be empty) and
// reads its public key.
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
			return fmt.Errorf("more than one private key with %s: give the id too", name)
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
		return nil, fmt.Errorf("read key %s: %w", name, err)
	}
	keyType, id, label := ulong(attrs[0].Value), attrs[1].Value, string(attrs[2].Value)
	k := &Key{token: t, obj: obj, name: name}
	if isTrue(attrs[4].Value) && !isTrue(attrs[3].Value) {
		k.usage = Decrypt
	}
	switch keyType {
	case pkcs11.CKK_RSA:
		k.pub, err = t.rsaPublic(s, obj, label, id)
	case pkcs11.CKK_EC, ckkECEdwards:
		k.pub, err = t.ecPublic(s, keyType, label, id)
	default:
		err = fmt.Errorf("key type 0x%x: want RSA or EC", keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", name, err)
	}
	return k, nil
}

func (t *Token) rsaPublic(s pkcs11.SessionHandle, priv pkcs11.ObjectHandle, label string, id []byte) (*rsa.PublicKey, error) {
	want := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_MODULUS, nil), pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, nil)}
	attrs, err := t.ctx.GetAttributeValue(s, priv, want)
	if err != nil || len(attrs[0].Value) == 0 {
		obj, ferr := t.publicObject(s, label, id)
		if ferr != nil {
			return nil, ferr
		}
		if attrs, err = t.ctx.GetAttributeValue(s, obj, want); err != nil {
			return nil, fmt.Errorf("read RSA public key: %w", err)
		}
	}
	e := new(big.Int).SetBytes(attrs[1].Value)
	if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 {
		return nil, errors.New("RSA public exponent out of range")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(attrs[0].Value), E: int(e.Int64())}, nil
}

// publicObject finds the public key that pairs with a private key: same
// ID, else same label.
func (t *Token) publicObject(s pkcs11.SessionHandle, label string, id []byte) (pkcs11.ObjectHandle, error) {
	if len(id) > 0 {
		if objs, err := t.find(s, pkcs11.CKO_PUBLIC_KEY, "", id, 1); err == nil && len(objs) == 1 {
			return objs[0], nil
		}
	}
	if label != "" {
		if objs, err := t.find(s, pkcs11.CKO_PUBLIC_KEY, label, nil, 1); err == nil && len(objs) == 1 {
			return objs[0], nil
		}
	}
	return 0, errors.New("no public key object beside the private key (same CKA_ID or label): its public key cannot be read")
}

// Named-curve OIDs of CKA_EC_PARAMS. P-224 and P-521 are recognised so
// that a refusal can name them.
var (
	oidP224    = asn1.ObjectIdentifier{1, 3, 132, 0, 33}
	oidP256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidP384    = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidP521    = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
)

func (t *Token) ecPublic(s pkcs11.SessionHandle, keyType uint, label string, id []byte) (crypto.PublicKey, error) {
	obj, err := t.publicObject(s, label, id)
	if err != nil {
		return nil, err
	}
	attrs, err := t.ctx.GetAttributeValue(s, obj, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, nil), pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil),
	})
	if err != nil {
		return nil, fmt.Errorf("read EC public key: %w", err)
	}
	point := attrs[1].Value
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner // DER OCTET STRING, as PKCS#11 says; some tokens give it raw
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(attrs[0].Value, &oid); err != nil {
		var name string
		if _, err := asn1.Unmarshal(attrs[0].Value, &name); err == nil && keyType == ckkECEdwards && strings.Contains(name, "25519") {
			oid = oidEd25519
		} else {
			return nil, fmt.Errorf("CKA_EC_PARAMS is not a named curve: %x", attrs[0].Value)
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
		if _, err := ecdh.P256().NewPublicKey(point); err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		if _, err := ecdh.P384().NewPublicKey(point); err != nil {
			return nil, fmt.Errorf("EC point: %w", err)
		}
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
	return &ecdsa.PublicKey{Curve: curve,
		X: new(big.Int).SetBytes(point[1 : 1+size]), Y: new(big.Int).SetBytes(point[1+size:])}, nil
}

// Generate makes a new key pair on the token: the private half
// non-extractable and sensitive, a signing or a decryption key. A nil id
// gets a random 8-byte CKA_ID. An existing object with the label or ID is
// refused with ErrObjectExists, and nothing is made.
func (t *Token) Generate(label string, id []byte, kt KeyType, u Usage) (*Key, error) {
	if label == "" {
		return nil, fmt.Errorf("hsm: token %q: generate: a key needs a label", t.label)
	}
	mech, pubTmpl, err := keyTemplate(kt)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: generate %s: %w", t.label, label, err)
	}
	if u == Decrypt && mech != pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN {
		return nil, fmt.Errorf("hsm: token %q: generate %s: a decryption key must be RSA, not %s", t.label, label, kt)
	}
	if len(id) == 0 {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, err
		}
	}
	sign, decrypt := u == Sign, u == Decrypt
	common := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_ID, id),
	}
	pubTmpl = append(append(pubTmpl, common...),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, sign),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, decrypt),
	)
	privTmpl := append(slices.Clone(common),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, sign),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, decrypt),
	)
	name := describe(label, nil)
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
				return fmt.Errorf("%w: %s", ErrObjectExists, describe(probe.label, probe.id))
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
		return nil, fmt.Errorf("hsm: token %q: generate %s: %w", t.label, label, err)
	}
	return k, nil
}

// keyTemplate is the mechanism and public-key attributes of a key type.
func keyTemplate(kt KeyType) (uint, []*pkcs11.Attribute, error) {
	rsaKey := func(bits int) (uint, []*pkcs11.Attribute, error) {
		return pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS_BITS, bits),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, []byte{1, 0, 1}),
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
	case RSA2048:
		return rsaKey(2048)
	case RSA3072:
		return rsaKey(3072)
	case ECP256:
		return ecKey(oidP256)
	case ECP384:
		return ecKey(oidP384)
	}
	return 0, nil, fmt.Errorf("unknown key type %q: want rsa2048, rsa3072, ecp256 or ecp384", kt)
}

// Destroy deletes the key pair (private and public objects) with label
// and/or id; ErrObjectAbsent if there is none.
func (t *Token) Destroy(label string, id []byte) error {
	if label == "" && len(id) == 0 {
		return fmt.Errorf("hsm: token %q: destroy: a key needs a label or an ID", t.label)
	}
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

// Public returns the key's public key: *rsa.PublicKey, *ecdsa.PublicKey
// or ed25519.PublicKey (which ggcore refuses, naming it).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Usage reports whether the key signs or decrypts.
func (k *Key) Usage() Usage { return k.usage }

// DigestInfo prefixes of PKCS#1 v1.5 signatures (RFC 8017, 9.2 note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

// PSS mechanism parameters by hash: the hash and MGF1 mechanisms.
var pssHash = map[crypto.Hash][2]uint{
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

// Sign signs digest: ECDSA (returned as ASN.1 DER, as crypto/tls
// expects), RSA PKCS#1 v1.5, or RSA-PSS when opts is *rsa.PSSOptions
// (salt length = hash length).
func (k *Key) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := k.sign(digest, opts)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: sign with key %s: %w", k.token.label, k.name, err)
	}
	return sig, nil
}

func (k *Key) sign(digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.usage != Sign {
		return nil, errors.New("the key was made for decryption and may not sign")
	}
	h := opts.HashFunc()
	if h == 0 || !h.Available() || len(digest) != h.Size() {
		return nil, fmt.Errorf("digest of %d bytes for hash %v: want a digest of the hash's size", len(digest), h)
	}
	var mech *pkcs11.Mechanism
	data := digest
	switch k.pub.(type) {
	case *ecdsa.PublicKey:
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			ph, ok := pssHash[h]
			if !ok {
				return nil, fmt.Errorf("RSA-PSS with %v: want SHA-256, SHA-384 or SHA-512", h)
			}
			if pss.SaltLength != rsa.PSSSaltLengthAuto && pss.SaltLength != rsa.PSSSaltLengthEqualsHash && pss.SaltLength != h.Size() {
				return nil, fmt.Errorf("RSA-PSS salt length %d: only the hash length (%d) is supported", pss.SaltLength, h.Size())
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(ph[0], ph[1], uint(h.Size())))
		} else {
			prefix, ok := digestInfo[h]
			if !ok {
				return nil, fmt.Errorf("RSA PKCS#1 v1.5 with %v: want SHA-1, SHA-256, SHA-384 or SHA-512", h)
			}
			data = append(slices.Clone(prefix), digest...)
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

// ecdsaDER turns PKCS#11's raw r||s into the ASN.1 SEQUENCE crypto/tls
// sends.
func ecdsaDER(raw []byte) ([]byte, error) {
	if len(raw) == 0 || len(raw)%2 != 0 {
		return nil, fmt.Errorf("ECDSA signature of %d bytes is not r||s", len(raw))
	}
	n := len(raw) / 2
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(raw[:n]), new(big.Int).SetBytes(raw[n:])})
}

// Decrypt decrypts an RSA PKCS#1 v1.5 ciphertext (opts nil or
// *rsa.PKCS1v15DecryptOptions). With SessionKeyLen set, a bad ciphertext
// yields a random key of that length instead of an error, as crypto/rsa
// does.
func (k *Key) Decrypt(_ io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	sessionKeyLen := 0
	switch o := opts.(type) {
	case nil:
	case *rsa.PKCS1v15DecryptOptions:
		sessionKeyLen = o.SessionKeyLen
	case *rsa.OAEPOptions:
		return nil, fmt.Errorf("hsm: token %q: decrypt with key %s: OAEP is not supported: ggcore wraps secrets with RSA PKCS#1 v1.5, as Greengrass v1", k.token.label, k.name)
	default:
		return nil, fmt.Errorf("hsm: token %q: decrypt with key %s: options %T: want nil or *rsa.PKCS1v15DecryptOptions", k.token.label, k.name, opts)
	}
	if _, isRSA := k.pub.(*rsa.PublicKey); !isRSA || k.usage != Decrypt {
		return nil, fmt.Errorf("hsm: token %q: decrypt with key %s: the key was made for signing and may not decrypt", k.token.label, k.name)
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
	if err != nil {
		if sessionKeyLen > 0 && !isSessionError(err) {
			key := make([]byte, sessionKeyLen)
			_, rerr := rand.Read(key)
			return key, rerr
		}
		return nil, fmt.Errorf("hsm: token %q: decrypt with key %s: %w", k.token.label, k.name, err)
	}
	if sessionKeyLen > 0 && len(plain) != sessionKeyLen {
		key := make([]byte, sessionKeyLen)
		_, rerr := rand.Read(key)
		return key, rerr
	}
	return plain, nil
}

func isSessionError(err error) bool {
	return isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isCode(err, pkcs11.CKR_SESSION_CLOSED) ||
		isCode(err, pkcs11.CKR_DEVICE_REMOVED) || isCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// isCode reports a PKCS#11 error with return value code.
func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
}

// ulong decodes a CK_ULONG attribute value (native byte order, as
// miekg/pkcs11 returns it).
func ulong(b []byte) uint {
	var v uint
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint(b[i])
	}
	return v
}

func isTrue(b []byte) bool { return len(b) == 1 && b[0] != 0 }
