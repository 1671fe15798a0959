//go:build cgo

package hsm

//lint:file-ignore SA1019 the fake token decrypts RSA PKCS #1 v1.5 (CKM_RSA_PKCS), the mechanism ggcore asks real tokens for, as Greengrass v1 wraps secrets with it.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"
)

// fakeModule is a PKCS#11 module in memory, a cryptoki for the tests of
// the logic above it: slots holding tokens, sessions, one login state per
// token (lost when its last session closes, as PKCS#11 says), objects
// with attributes, and real EC and RSA keys behind the private key
// objects. fail makes chosen calls return CKR_* errors. It is safe for
// concurrent use.
type fakeModule struct {
	mu sync.Mutex

	tokens   []fakeSlot // by slot ID
	sessions map[pkcs11.SessionHandle]uint
	loggedIn map[uint]bool // by slot
	objects  map[pkcs11.ObjectHandle]map[uint][]byte
	keys     map[pkcs11.ObjectHandle]crypto.Signer // private key objects' keys
	finding  map[pkcs11.SessionHandle][]pkcs11.ObjectHandle
	op       map[pkcs11.SessionHandle]pkcs11.ObjectHandle // key of the SignInit/DecryptInit
	next     uint                                         // last handle given out

	fail  map[string][]error // by method name: the errors its next calls return
	calls map[string]int     // by method name
	peak  int                // most sessions open at once
}

// fakeSlot is the token in a fakeModule's slot.
type fakeSlot struct {
	info pkcs11.TokenInfo
	pin  string
}

// newFake returns a fake module with an initialised, login-required token
// in each slot, labelled labels[slot], user PIN "1234".
func newFake(labels ...string) *fakeModule {
	f := &fakeModule{
		sessions: map[pkcs11.SessionHandle]uint{}, loggedIn: map[uint]bool{},
		objects: map[pkcs11.ObjectHandle]map[uint][]byte{}, keys: map[pkcs11.ObjectHandle]crypto.Signer{},
		finding: map[pkcs11.SessionHandle][]pkcs11.ObjectHandle{}, op: map[pkcs11.SessionHandle]pkcs11.ObjectHandle{},
		fail: map[string][]error{}, calls: map[string]int{},
	}
	for _, l := range labels {
		f.tokens = append(f.tokens, fakeSlot{pin: "1234", info: pkcs11.TokenInfo{
			Label: fmt.Sprintf("%-32s", l), Flags: pkcs11.CKF_TOKEN_INITIALIZED | pkcs11.CKF_LOGIN_REQUIRED,
		}})
	}
	return f
}

// failNext makes the next calls of method return errs, one each.
func (f *fakeModule) failNext(method string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[method] = append(f.fail[method], errs...)
}

// count returns how often method was called.
func (f *fakeModule) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// open returns the number of open sessions.
func (f *fakeModule) open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// enter counts a call of method and returns the error it is to fail
// with; f.mu must be held.
func (f *fakeModule) enter(method string) error {
	f.calls[method]++
	if errs := f.fail[method]; len(errs) > 0 {
		f.fail[method] = errs[1:]
		return errs[0]
	}
	return nil
}

// session checks a session handle; f.mu must be held.
func (f *fakeModule) session(sh pkcs11.SessionHandle) (uint, error) {
	slot, ok := f.sessions[sh]
	if !ok {
		return 0, pkcs11.Error(pkcs11.CKR_SESSION_HANDLE_INVALID)
	}
	return slot, nil
}

func (f *fakeModule) Initialize(...pkcs11.InitializeOption) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("Initialize")
}

func (f *fakeModule) Finalize() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.enter("Finalize")
}

func (f *fakeModule) Destroy() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["Destroy"]++
}

func (f *fakeModule) GetSlotList(bool) ([]uint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetSlotList"); err != nil {
		return nil, err
	}
	slots := make([]uint, len(f.tokens))
	for i := range slots {
		slots[i] = uint(i)
	}
	return slots, nil
}

func (f *fakeModule) GetTokenInfo(slot uint) (pkcs11.TokenInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetTokenInfo"); err != nil {
		return pkcs11.TokenInfo{}, err
	}
	if slot >= uint(len(f.tokens)) {
		return pkcs11.TokenInfo{}, pkcs11.Error(pkcs11.CKR_SLOT_ID_INVALID)
	}
	return f.tokens[slot].info, nil
}

func (f *fakeModule) OpenSession(slot uint, _ uint) (pkcs11.SessionHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("OpenSession"); err != nil {
		return 0, err
	}
	f.next++
	sh := pkcs11.SessionHandle(f.next)
	f.sessions[sh] = slot
	f.peak = max(f.peak, len(f.sessions))
	return sh, nil
}

func (f *fakeModule) CloseSession(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CloseSession"); err != nil {
		return err
	}
	slot, err := f.session(sh)
	if err != nil {
		return err
	}
	delete(f.sessions, sh)
	for _, s := range f.sessions {
		if s == slot {
			return nil
		}
	}
	f.loggedIn[slot] = false // the token's last session closed: logged out
	return nil
}

func (f *fakeModule) GetSessionInfo(sh pkcs11.SessionHandle) (pkcs11.SessionInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetSessionInfo"); err != nil {
		return pkcs11.SessionInfo{}, err
	}
	slot, err := f.session(sh)
	if err != nil {
		return pkcs11.SessionInfo{}, err
	}
	state := uint(pkcs11.CKS_RW_PUBLIC_SESSION)
	if f.loggedIn[slot] {
		state = pkcs11.CKS_RW_USER_FUNCTIONS
	}
	return pkcs11.SessionInfo{SlotID: slot, State: state}, nil
}

func (f *fakeModule) Login(sh pkcs11.SessionHandle, _ uint, pin string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Login"); err != nil {
		return err
	}
	slot, err := f.session(sh)
	switch {
	case err != nil:
		return err
	case f.loggedIn[slot]:
		return pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)
	case pin != f.tokens[slot].pin:
		return pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
	}
	f.loggedIn[slot] = true
	return nil
}

func (f *fakeModule) FindObjectsInit(sh pkcs11.SessionHandle, temp []*pkcs11.Attribute) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("FindObjectsInit"); err != nil {
		return err
	}
	if _, err := f.session(sh); err != nil {
		return err
	}
	var found []pkcs11.ObjectHandle
objects:
	for h, attrs := range f.objects {
		for _, a := range temp {
			if v, ok := attrs[a.Type]; !ok || !bytes.Equal(v, a.Value) {
				continue objects
			}
		}
		found = append(found, h)
	}
	slices.Sort(found)
	f.finding[sh] = found
	return nil
}

func (f *fakeModule) FindObjects(sh pkcs11.SessionHandle, limit int) ([]pkcs11.ObjectHandle, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("FindObjects"); err != nil {
		return nil, false, err
	}
	found := f.finding[sh]
	n := min(limit, len(found))
	f.finding[sh] = found[n:]
	return found[:n], false, nil
}

func (f *fakeModule) FindObjectsFinal(sh pkcs11.SessionHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.finding, sh)
	return f.enter("FindObjectsFinal")
}

func (f *fakeModule) GetAttributeValue(sh pkcs11.SessionHandle, o pkcs11.ObjectHandle, a []*pkcs11.Attribute) ([]*pkcs11.Attribute, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GetAttributeValue"); err != nil {
		return nil, err
	}
	attrs, ok := f.objects[o]
	if !ok {
		return nil, pkcs11.Error(pkcs11.CKR_OBJECT_HANDLE_INVALID)
	}
	out := make([]*pkcs11.Attribute, len(a))
	for i, want := range a {
		v, ok := attrs[want.Type]
		if !ok {
			return nil, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_TYPE_INVALID)
		}
		out[i] = pkcs11.NewAttribute(want.Type, v)
	}
	return out, nil
}

// add stores an object with attrs and returns its handle; f.mu must be
// held.
func (f *fakeModule) add(attrs []*pkcs11.Attribute) pkcs11.ObjectHandle {
	f.next++
	h := pkcs11.ObjectHandle(f.next)
	f.objects[h] = map[uint][]byte{}
	for _, a := range attrs {
		f.objects[h][a.Type] = a.Value
	}
	return h
}

func (f *fakeModule) GenerateKeyPair(sh pkcs11.SessionHandle, m []*pkcs11.Mechanism, public, private []*pkcs11.Attribute) (pkcs11.ObjectHandle, pkcs11.ObjectHandle, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("GenerateKeyPair"); err != nil {
		return 0, 0, err
	}
	if _, err := f.session(sh); err != nil {
		return 0, 0, err
	}
	value := func(typ uint) []byte {
		for _, a := range public {
			if a.Type == typ {
				return a.Value
			}
		}
		return nil
	}
	var key crypto.Signer
	var pubAttrs []*pkcs11.Attribute
	switch m[0].Mechanism {
	case pkcs11.CKM_EC_KEY_PAIR_GEN:
		var oid asn1.ObjectIdentifier
		if _, err := asn1.Unmarshal(value(pkcs11.CKA_EC_PARAMS), &oid); err != nil {
			return 0, 0, pkcs11.Error(pkcs11.CKR_DOMAIN_PARAMS_INVALID)
		}
		curve := elliptic.P256()
		if oid.Equal(oidP384) {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return 0, 0, pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED)
		}
		raw, _ := k.PublicKey.Bytes()
		point, _ := asn1.Marshal(raw)
		key, pubAttrs = k, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, point)}
	case pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:
		k, err := rsa.GenerateKey(rand.Reader, int(ulong(value(pkcs11.CKA_MODULUS_BITS))))
		if err != nil {
			return 0, 0, pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED)
		}
		key, pubAttrs = k, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, k.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(k.E)).Bytes()),
		}
	default:
		return 0, 0, pkcs11.Error(pkcs11.CKR_MECHANISM_INVALID)
	}
	keyType := pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, value(pkcs11.CKA_KEY_TYPE))
	pub := f.add(slices.Concat(public, pubAttrs))
	priv := f.add(slices.Concat(private, []*pkcs11.Attribute{keyType}))
	f.keys[priv] = key
	return pub, priv, nil
}

func (f *fakeModule) DestroyObject(_ pkcs11.SessionHandle, oh pkcs11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("DestroyObject"); err != nil {
		return err
	}
	delete(f.objects, oh)
	delete(f.keys, oh)
	return nil
}

// init starts an operation with key o on session sh; f.mu must be held.
func (f *fakeModule) init(method string, sh pkcs11.SessionHandle, o pkcs11.ObjectHandle) error {
	if err := f.enter(method); err != nil {
		return err
	}
	if _, err := f.session(sh); err != nil {
		return err
	}
	if f.keys[o] == nil {
		return pkcs11.Error(pkcs11.CKR_KEY_HANDLE_INVALID)
	}
	f.op[sh] = o
	return nil
}

func (f *fakeModule) SignInit(sh pkcs11.SessionHandle, _ []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.init("SignInit", sh, o)
}

// Sign signs with an EC key as a token does, returning r||s.
func (f *fakeModule) Sign(sh pkcs11.SessionHandle, message []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Sign"); err != nil {
		return nil, err
	}
	key := f.keys[f.op[sh]]
	delete(f.op, sh)
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		r, s, err := ecdsa.Sign(rand.Reader, k, message)
		if err != nil {
			return nil, pkcs11.Error(pkcs11.CKR_FUNCTION_FAILED)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		return append(r.FillBytes(make([]byte, n)), s.FillBytes(make([]byte, n))...), nil
	}
	return nil, pkcs11.Error(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
}

func (f *fakeModule) DecryptInit(sh pkcs11.SessionHandle, _ []*pkcs11.Mechanism, o pkcs11.ObjectHandle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.init("DecryptInit", sh, o)
}

func (f *fakeModule) Decrypt(sh pkcs11.SessionHandle, cipher []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Decrypt"); err != nil {
		return nil, err
	}
	k, ok := f.keys[f.op[sh]].(*rsa.PrivateKey)
	delete(f.op, sh)
	if !ok {
		return nil, pkcs11.Error(pkcs11.CKR_OPERATION_NOT_INITIALIZED)
	}
	plain, err := rsa.DecryptPKCS1v15(nil, k, cipher)
	if err != nil {
		return nil, pkcs11.Error(pkcs11.CKR_ENCRYPTED_DATA_INVALID)
	}
	return plain, nil
}

// fakeModuleHandle initialises f as the module "fake.so" and returns a
// handle on it. The module is not in the process's registry; closing the
// handle shuts it down.
func fakeModuleHandle(t *testing.T, f *fakeModule) *Module {
	t.Helper()
	m, err := initModule("fake.so", f)
	if err != nil {
		t.Fatal(err)
	}
	mod := &Module{m: m}
	t.Cleanup(func() { _ = mod.Close() })
	return mod
}

// openFakeToken logs in to the fake's token labelled label with PIN 1234.
func openFakeToken(t *testing.T, f *fakeModule, label string) *Token {
	t.Helper()
	tok, err := fakeModuleHandle(t, f).Token(label, "1234")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ckr is the error a module returns for code.
func ckr(code uint) error { return pkcs11.Error(code) }
