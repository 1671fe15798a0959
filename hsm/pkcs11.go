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
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// modules is the process's registry of loaded PKCS#11 modules by cleaned
// path. It is the package's one piece of package-level state, and has to
// be: PKCS#11 is process-global by nature. C_Initialize may run once per
// module per process (a second one answers
// CKR_CRYPTOKI_ALREADY_INITIALIZED), logins belong to the token for the
// whole process, and C_Finalize ends every session and login of every
// user at once. So every OpenModule of a path shares one initialisation,
// counted by references, and the last Close finalises it.
var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: make(map[string]*module)}

// module is one initialised PKCS#11 module, shared by every Module handle
// opened on its path.
type module struct {
	path  string
	ctx   *pkcs11.Ctx
	owned bool // this package ran C_Initialize (and so runs C_Finalize)
	refs  int  // open Module handles; guarded by modules

	mu     sync.Mutex
	closed bool
	tokens map[string]*Token // by label: one login state per token
}

// maxSessions bounds the sessions a Token keeps open (fewer if the token
// says it allows fewer); callers beyond it wait for a free one.
const maxSessions = 16

// ckkECEdwards is CKK_EC_EDWARDS (PKCS#11 3.0), which miekg/pkcs11 v1.1.2
// does not name.
const ckkECEdwards = 0x40

// Module is a handle on a loaded, initialised PKCS#11 module. Handles on
// the same path share the module, its logins and its sessions.
type Module struct {
	m      *module
	closed atomic.Bool
}

// OpenModule loads the PKCS#11 module at path and initialises it, once
// per process however many handles are open on it. A path without a
// slash is a library name for the dynamic loader to find.
func OpenModule(path string) (*Module, error) {
	if path == "" {
		return nil, errors.New("hsm: no PKCS#11 module path given")
	}
	if strings.Contains(path, "/") {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("hsm: module %s: %w", path, err)
		}
		path = abs // Abs cleans
	}
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[path]; m != nil {
		m.refs++
		return &Module{m: m}, nil
	}
	if strings.Contains(path, "/") {
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("hsm: module %s: %w", path, err)
		}
		if info.IsDir() {
			return nil, fmt.Errorf("hsm: module %s: is a directory, not a PKCS#11 module", path)
		}
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("hsm: module %s: cannot load it as a PKCS#11 module (dlopen failed or it has no C_GetFunctionList)", path)
	}
	owned := true
	if err := ctx.Initialize(); err != nil {
		if !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, fmt.Errorf("hsm: module %s: C_Initialize: %w", path, err)
		}
		owned = false // initialised by other code in this process: leave finalising to it
	}
	m := &module{path: path, ctx: ctx, owned: owned, refs: 1, tokens: make(map[string]*Token)}
	modules.byPath[path] = m
	return &Module{m: m}, nil
}

// Close releases this handle. The last handle on a module waits for the
// operations in flight, closes every session and finalises the module;
// tokens and keys from it fail from then on. Close is safe to call more
// than once.
func (mod *Module) Close() error {
	if mod.closed.Swap(true) {
		return nil
	}
	modules.Lock()
	defer modules.Unlock()
	m := mod.m
	if m.refs--; m.refs > 0 {
		return nil
	}
	delete(modules.byPath, m.path)
	m.mu.Lock()
	m.closed = true
	tokens := m.tokens
	m.tokens = nil
	m.mu.Unlock()
	for _, t := range tokens {
		t.shutdown()
	}
	var err error
	if m.owned {
		if e := m.ctx.Finalize(); e != nil {
			err = fmt.Errorf("hsm: module %s: C_Finalize: %w", m.path, e)
		}
	}
	m.ctx.Destroy()
	return err
}

// Token is a logged-in token with a pool of sessions. It is safe for
// concurrent use: each operation takes a session of its own for its
// duration, since a PKCS#11 session runs one operation at a time.
type Token struct {
	m     *module
	ctx   *pkcs11.Ctx
	slot  uint
	label string
	pin   string // kept to log in again if the token logs out; never printed

	// sem holds one value per session an operation holds or may open:
	// its capacity bounds the sessions.
	sem chan struct{}

	mu     sync.Mutex
	idle   []pkcs11.SessionHandle
	closed bool
	busy   sync.WaitGroup // operations in flight, awaited by shutdown

	// gen serialises Generate and Destroy, so that the check for an
	// existing label or ID and the creation stay one step in this
	// process.
	gen sync.Mutex
}

// Token finds the token labelled label (by label: slot numbers change)
// and logs in as the user with pin, once per token per process: later
// calls for the same label share the first one's login and sessions.
func (mod *Module) Token(label, pin string) (*Token, error) {
	m := mod.m
	if mod.closed.Load() {
		return nil, fmt.Errorf("hsm: module %s: token %q: the module handle is closed", m.path, label)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("hsm: module %s: token %q: the module is closed", m.path, label)
	}
	if t := m.tokens[label]; t != nil {
		if t.pin != pin {
			return nil, fmt.Errorf("hsm: token %q: %w (the token is already logged in with another PIN)", label, ErrWrongPIN)
		}
		return t, nil
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: C_GetSlotList: %w", m.path, err)
	}
	var found []string
	var matches []uint
	var match pkcs11.TokenInfo
	for _, slot := range slots {
		info, err := m.ctx.GetTokenInfo(slot)
		if err != nil || info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		l := strings.TrimRight(info.Label, " \x00")
		if l == label {
			matches = append(matches, slot)
			match = info
		} else {
			found = append(found, fmt.Sprintf("%q", l))
		}
	}
	switch len(matches) {
	case 0:
		slices.Sort(found)
		have := "none"
		if len(found) > 0 {
			have = strings.Join(found, ", ")
		}
		return nil, fmt.Errorf("hsm: %w labelled %q in module %s (tokens found: %s)", ErrTokenAbsent, label, m.path, have)
	case 1:
	default:
		return nil, fmt.Errorf("hsm: module %s: %d tokens are labelled %q (slots %v): give each token its own label", m.path, len(matches), label, matches)
	}
	n := maxSessions
	if c := match.MaxRwSessionCount; c > 0 && c < uint(n) { // 0: no limit; ^0: unknown
		n = int(c)
	}
	t := &Token{m: m, ctx: m.ctx, slot: matches[0], label: label, pin: pin, sem: make(chan struct{}, n)}
	if pin == "" && match.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0 {
		return nil, fmt.Errorf("hsm: token %q: the token needs the user PIN to log in, and none was given", label)
	}
	// The first session logs in: a wrong PIN fails here, not at the
	// first signature.
	s, err := t.openSession()
	if err != nil {
		return nil, err
	}
	t.idle = append(t.idle, s)
	m.tokens[label] = t
	return t, nil
}

// openSession opens a read-write session and logs the token in as the
// user unless it already is (logins are per token, so usually only the
// first session logs in; later ones find the token logged in).
func (t *Token) openSession() (pkcs11.SessionHandle, error) {
	s, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("hsm: token %q: C_OpenSession: %w", t.label, err)
	}
	if err := t.login(s); err != nil {
		_ = t.ctx.CloseSession(s)
		return 0, err
	}
	return s, nil
}

func (t *Token) login(s pkcs11.SessionHandle) error {
	if info, err := t.ctx.GetSessionInfo(s); err == nil &&
		(info.State == pkcs11.CKS_RW_USER_FUNCTIONS || info.State == pkcs11.CKS_RO_USER_FUNCTIONS) {
		return nil
	}
	if t.pin == "" {
		return nil // no login required and no PIN given
	}
	err := t.ctx.Login(s, pkcs11.CKU_USER, t.pin)
	switch {
	case err == nil, isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN):
		return nil
	case isCode(err, pkcs11.CKR_PIN_INCORRECT), isCode(err, pkcs11.CKR_PIN_LEN_RANGE):
		return fmt.Errorf("hsm: token %q: log in: %w (%v)", t.label, ErrWrongPIN, err)
	case isCode(err, pkcs11.CKR_PIN_LOCKED):
		return fmt.Errorf("hsm: token %q: log in: the user PIN is locked after too many wrong PINs; the security officer must unlock it (%v)", t.label, err)
	case isCode(err, pkcs11.CKR_USER_PIN_NOT_INITIALIZED):
		return fmt.Errorf("hsm: token %q: log in: the token has no user PIN yet; initialise it first (%v)", t.label, err)
	}
	return fmt.Errorf("hsm: token %q: log in: %w", t.label, err)
}

// errClosed: the module of a token was closed.
var errClosed = errors.New("the PKCS#11 module is closed")

// session runs f with a session of its own: an idle one, a new one while
// fewer than the bound are open, or else the next one freed. No lock is
// held while f runs. A session the token reports gone is dropped.
func (t *Token) session(f func(pkcs11.SessionHandle) error) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("module %s: %w", t.m.path, errClosed)
	}
	t.busy.Add(1)
	t.mu.Unlock()
	defer t.busy.Done()

	t.sem <- struct{}{}
	defer func() { <-t.sem }()
	t.mu.Lock()
	var s pkcs11.SessionHandle
	reuse := len(t.idle) > 0
	if reuse {
		s = t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
	}
	t.mu.Unlock()
	if !reuse {
		var err error
		if s, err = t.openSession(); err != nil {
			return err
		}
	}
	err := f(s)
	if isSessionGone(err) {
		_ = t.ctx.CloseSession(s)
		return err
	}
	t.mu.Lock()
	t.idle = append(t.idle, s)
	t.mu.Unlock()
	return err
}

// shutdown waits for the operations in flight and closes the sessions;
// later operations fail with errClosed.
func (t *Token) shutdown() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.busy.Wait()
	t.mu.Lock()
	for _, s := range t.idle {
		_ = t.ctx.CloseSession(s)
	}
	t.idle = nil
	t.mu.Unlock()
}

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
		if _, err := ecdh.P256().NewPublicKey(point); err != nil {
			return nil, fmt.Errorf("P-256 point: %w", err)
		}
		curve = elliptic.P256()
	case oid.Equal(oidP384):
		if _, err := ecdh.P384().NewPublicKey(point); err != nil {
			return nil, fmt.Errorf("P-384 point: %w", err)
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

// Generate makes a new key pair on the token: the private half private,
// sensitive and non-extractable, a signing key (CKA_SIGN) or a decryption
// key (CKA_DECRYPT, RSA only), never both. Both halves get label and id.
// A nil id gets a fresh random 8-byte CKA_ID (random rather than derived
// from the public key, which is known only after generation). A label or
// ID already on the token is refused with ErrObjectExists, changing
// nothing.
func (t *Token) Generate(label string, id []byte, kt KeyType, u Usage) (*Key, error) {
	if label == "" {
		return nil, fmt.Errorf("hsm: token %q: generate: a key needs a label", t.label)
	}
	mech, pubTmpl, err := keyTemplate(kt)
	if err != nil {
		return nil, fmt.Errorf("hsm: token %q: generate %q: %w", t.label, label, err)
	}
	if u != Sign && u != Decrypt {
		return nil, fmt.Errorf("hsm: token %q: generate %q: unknown usage %d", t.label, label, u)
	}
	if u == Decrypt && mech != pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN {
		return nil, fmt.Errorf("hsm: token %q: generate %q: a decryption key must be RSA (rsa2048, rsa3072), not %s", t.label, label, kt)
	}
	if len(id) == 0 {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("hsm: token %q: generate %q: random ID: %w", t.label, label, err)
		}
	}
	sign, decrypt := u == Sign, u == Decrypt
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
func keyTemplate(kt KeyType) (uint, []*pkcs11.Attribute, error) {
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

// Public returns the key's public key: *rsa.PublicKey or
// *ecdsa.PublicKey (or, for a key ggcore refuses, ed25519.PublicKey).
func (k *Key) Public() crypto.PublicKey { return k.pub }

// Usage reports what the key is for: Decrypt for a key that may decrypt
// and not sign, Sign otherwise.
func (k *Key) Usage() Usage {
	if k.canDecrypt && !k.canSign {
		return Decrypt
	}
	return Sign
}

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

// isSessionGone reports errors after which a session is unusable.
func isSessionGone(err error) bool {
	return isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isCode(err, pkcs11.CKR_SESSION_CLOSED) ||
		isCode(err, pkcs11.CKR_DEVICE_REMOVED) || isCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT)
}

// isCode reports a PKCS#11 error with return value code.
func isCode(err error, code uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == code
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
