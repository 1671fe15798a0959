//go:build cgo

package hsm

//lint:file-ignore SA1019 the tests wrap data keys with RSA PKCS #1 v1.5, as Greengrass v1 does, to check the token decrypts them.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// These tests check how CKR_* codes and missing tokens and objects become
// the package's errors, with a fake module (fake_test.go) instead of a
// token.

func TestLoginError(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		is    error  // the sentinel the result must match, if any
		want  string // text the result must contain; "" for nil
		isCKR bool   // the result still carries the CKR code
	}{
		{name: "logged in", err: nil},
		{name: "already logged in", err: ckr(pkcs11.CKR_USER_ALREADY_LOGGED_IN)},
		{name: "wrong PIN", err: ckr(pkcs11.CKR_PIN_INCORRECT), is: ErrWrongPIN, want: `token "t": log in: wrong PIN`},
		{name: "PIN of the wrong length", err: ckr(pkcs11.CKR_PIN_LEN_RANGE), is: ErrWrongPIN, want: "wrong PIN"},
		{name: "PIN locked", err: ckr(pkcs11.CKR_PIN_LOCKED), want: "the user PIN is locked after too many wrong PINs; the security officer must unlock it"},
		{name: "no user PIN", err: ckr(pkcs11.CKR_USER_PIN_NOT_INITIALIZED), want: "the token has no user PIN yet"},
		{name: "other", err: ckr(pkcs11.CKR_DEVICE_ERROR), want: `token "t": log in: pkcs11: 0x30`, isCKR: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := loginError("t", tc.err)
			if tc.want == "" {
				if err != nil {
					t.Errorf("loginError(%v) = %v; want nil", tc.err, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("loginError(%v) = %v; want an error containing %q", tc.err, err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("loginError(%v) = %v; want it to match %v", tc.err, err, tc.is)
			}
			if tc.isCKR && !errors.Is(err, tc.err) {
				t.Errorf("loginError(%v) = %v; want it to wrap the module's error", tc.err, err)
			}
		})
	}
}

func TestIsSessionGone(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("other"), false},
		{errClosed, false},
		{ckr(pkcs11.CKR_SESSION_HANDLE_INVALID), true},
		{ckr(pkcs11.CKR_SESSION_CLOSED), true},
		{ckr(pkcs11.CKR_DEVICE_REMOVED), true},
		{ckr(pkcs11.CKR_TOKEN_NOT_PRESENT), true},
		{fmt.Errorf("C_Sign: %w", ckr(pkcs11.CKR_DEVICE_REMOVED)), true},
		{ckr(pkcs11.CKR_FUNCTION_FAILED), false},
		{ckr(pkcs11.CKR_PIN_INCORRECT), false},
	} {
		if got := isSessionGone(tc.err); got != tc.want {
			t.Errorf("isSessionGone(%v) = %v; want %v", tc.err, got, tc.want)
		}
	}
}

// Module.Token finds a token by label, says which tokens there are when
// it finds none, refuses ambiguous labels and wrong or missing PINs, and
// shares one login per token.
func TestTokenLookup(t *testing.T) {
	type setup func(f *fakeModule)
	uninitialised := func(slot int) setup {
		return func(f *fakeModule) { f.tokens[slot].info.Flags &^= pkcs11.CKF_TOKEN_INITIALIZED }
	}
	tests := []struct {
		name   string
		labels []string
		setup  setup
		label  string
		pin    string
		is     error
		want   string // text of the error; "" for success
	}{
		{name: "found", labels: []string{"b", "a"}, label: "a", pin: "1234"},
		{name: "no tokens", label: "a", pin: "1234", is: ErrTokenAbsent, want: `no such token labelled "a" in module fake.so (tokens found: none)`},
		{name: "others listed", labels: []string{"c", "b"}, label: "a", pin: "1234", is: ErrTokenAbsent, want: `(tokens found: "b", "c")`},
		{name: "uninitialised token ignored", labels: []string{"a", "b"}, setup: uninitialised(0), label: "a", pin: "1234", is: ErrTokenAbsent, want: `(tokens found: "b")`},
		{name: "token info unreadable", labels: []string{"a"}, setup: func(f *fakeModule) { f.failNext("GetTokenInfo", ckr(pkcs11.CKR_DEVICE_ERROR)) }, label: "a", pin: "1234", is: ErrTokenAbsent},
		{name: "two tokens with the label", labels: []string{"a", "b", "a"}, label: "a", pin: "1234", want: `2 tokens are labelled "a" (slots [0 2]): give each token its own label`},
		{name: "slot list fails", labels: []string{"a"}, setup: func(f *fakeModule) { f.failNext("GetSlotList", ckr(pkcs11.CKR_DEVICE_ERROR)) }, label: "a", pin: "1234", want: "module fake.so: C_GetSlotList"},
		{name: "wrong PIN", labels: []string{"a"}, label: "a", pin: "9999", is: ErrWrongPIN, want: `token "a": log in: wrong PIN`},
		{name: "no PIN for a token that needs one", labels: []string{"a"}, label: "a", pin: "", want: `token "a": the token needs the user PIN to log in, and none was given`},
		{name: "no PIN for a token that needs none", labels: []string{"a"}, setup: func(f *fakeModule) { f.tokens[0].info.Flags &^= pkcs11.CKF_LOGIN_REQUIRED }, label: "a", pin: ""},
		{name: "session cannot open", labels: []string{"a"}, setup: func(f *fakeModule) { f.failNext("OpenSession", ckr(pkcs11.CKR_DEVICE_ERROR)) }, label: "a", pin: "1234", want: `token "a": C_OpenSession`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(tc.labels...)
			if tc.setup != nil {
				tc.setup(f)
			}
			mod := fakeModuleHandle(t, f)
			tok, err := mod.Token(tc.label, tc.pin)
			if tc.want == "" && tc.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				if tok.label != tc.label || f.open() != 1 {
					t.Errorf("token %q with %d sessions; want %q with 1", tok.label, f.open(), tc.label)
				}
				if again, err := mod.Token(tc.label, tc.pin); err != nil || again != tok {
					t.Errorf("second Token = %p, %v; want the first (%p)", again, err, tok)
				}
				if _, err := mod.Token(tc.label, "5555"); !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), "5555") {
					t.Errorf("Token with another PIN = %v; want ErrWrongPIN without the PIN", err)
				}
				return
			}
			if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Token(%q) = %v; want an error (%v) containing %q", tc.label, err, tc.is, tc.want)
			}
			if err != nil && tc.pin != "" && strings.Contains(err.Error(), tc.pin) {
				t.Errorf("Token(%q) = %v: the error shows the PIN", tc.label, err)
			}
			if n := f.open(); n != 0 {
				t.Errorf("%d sessions left open by a failed Token", n)
			}
		})
	}
}

// A wrong PIN does not stick: the right one works afterwards.
func TestTokenRightPINAfterWrong(t *testing.T) {
	f := newFake("a")
	mod := fakeModuleHandle(t, f)
	if _, err := mod.Token("a", "9999"); !errors.Is(err, ErrWrongPIN) {
		t.Fatalf("wrong PIN = %v; want ErrWrongPIN", err)
	}
	if _, err := mod.Token("a", "1234"); err != nil {
		t.Errorf("right PIN after a wrong one: %v", err)
	}
}

// Missing, ambiguous and existing objects become ErrObjectAbsent, errors
// naming them and ErrObjectExists, and a refused Generate changes nothing.
func TestObjectErrors(t *testing.T) {
	f := newFake("a")
	tok := openFakeToken(t, f, "a")
	if _, err := tok.Generate("taken", []byte{9}, keyspec.ECP256, keyspec.Sign); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	for _, id := range []byte{1, 2} {
		f.add([]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "twice"),
			pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{id}),
		})
	}
	f.add([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY), pkcs11.NewAttribute(pkcs11.CKA_LABEL, "dsa"),
		pkcs11.NewAttribute(pkcs11.CKA_ID, []byte{3}), pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_DSA),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
	})
	objects := len(f.objects)
	f.mu.Unlock()

	keys := []struct {
		label string
		id    []byte
		is    error
		want  string
	}{
		{"", nil, nil, `token "a": a key needs a label or an ID`},
		{"absent", nil, ErrObjectAbsent, `token "a": no such key object with label "absent"`},
		{"", []byte{7, 7}, ErrObjectAbsent, "with id 0707"},
		{"taken", []byte{7}, ErrObjectAbsent, `with label "taken" id 07`},
		{"twice", nil, nil, `more than one private key with label "twice": name it by label and ID`},
		{"dsa", nil, nil, `key label "dsa": key type 0x1: want RSA or EC`},
	}
	for _, c := range keys {
		_, err := tok.Key(c.label, c.id)
		if err == nil || c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Key(%q, %x) = %v; want an error (%v) containing %q", c.label, c.id, err, c.is, c.want)
		}
	}
	if k, err := tok.Key("twice", []byte{2}); err == nil {
		t.Errorf("Key(twice, 02) = %v; want an error (it has no key type)", k)
	}

	generates := []struct {
		label string
		id    []byte
		kt    keyspec.Type
		u     keyspec.Usage
		is    error
		want  string
	}{
		{"taken", nil, keyspec.ECP256, keyspec.Sign, ErrObjectExists, `an object with label "taken" is on the token`},
		{"new", []byte{9}, keyspec.ECP256, keyspec.Sign, ErrObjectExists, "an object with id 09 is on the token"},
		{"", nil, keyspec.ECP256, keyspec.Sign, nil, "a key needs a label"},
		{"new", nil, keyspec.Type("dsa1024"), keyspec.Sign, nil, `unknown key type "dsa1024"`},
		{"new", nil, keyspec.ECP384, keyspec.Decrypt, nil, "a decryption key must be RSA (rsa2048, rsa3072), not ecp384"},
		{"new", nil, keyspec.RSA2048, keyspec.Usage(7), nil, "unknown usage 7"},
	}
	for _, c := range generates {
		_, err := tok.Generate(c.label, c.id, c.kt, c.u)
		if err == nil || c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Generate(%q, %x, %s, %v) = %v; want an error (%v) containing %q", c.label, c.id, c.kt, c.u, err, c.is, c.want)
		}
	}
	if n := f.count("GenerateKeyPair"); n != 1 {
		t.Errorf("C_GenerateKeyPair called %d times; want only for the first key", n)
	}
	f.failNext("GenerateKeyPair", ckr(pkcs11.CKR_DEVICE_MEMORY))
	if _, err := tok.Generate("full", nil, keyspec.ECP256, keyspec.Sign); err == nil || !strings.Contains(err.Error(), "C_GenerateKeyPair") || !isCode(err, pkcs11.CKR_DEVICE_MEMORY) {
		t.Errorf("Generate on a full token = %v; want the C_GenerateKeyPair error", err)
	}
	f.mu.Lock()
	if len(f.objects) != objects {
		t.Errorf("refused Generate calls left %d objects; had %d", len(f.objects), objects)
	}
	f.mu.Unlock()

	f.failNext("FindObjectsInit", ckr(pkcs11.CKR_DEVICE_ERROR))
	if _, err := tok.Key("taken", nil); errors.Is(err, ErrObjectAbsent) || !strings.Contains(err.Error(), "C_FindObjectsInit") || !isCode(err, pkcs11.CKR_DEVICE_ERROR) {
		t.Errorf("Key when the search fails = %v; want the C_FindObjectsInit error, not ErrObjectAbsent", err)
	}
	f.failNext("FindObjects", ckr(pkcs11.CKR_DEVICE_ERROR))
	if _, err := tok.Key("taken", nil); !strings.Contains(err.Error(), "C_FindObjects:") {
		t.Errorf("Key when the search fails = %v; want the C_FindObjects error", err)
	}

	if err := tok.Destroy("", nil); err == nil || !strings.Contains(err.Error(), "a key needs a label or an ID") {
		t.Errorf("Destroy without label or ID = %v", err)
	}
	if err := tok.Destroy("absent", nil); !errors.Is(err, ErrObjectAbsent) || !strings.Contains(err.Error(), `destroy label "absent"`) {
		t.Errorf("Destroy of an absent key = %v; want ErrObjectAbsent", err)
	}
	f.failNext("DestroyObject", ckr(pkcs11.CKR_ACTION_PROHIBITED))
	if err := tok.Destroy("taken", nil); !isCode(err, pkcs11.CKR_ACTION_PROHIBITED) || !strings.Contains(err.Error(), "C_DestroyObject") {
		t.Errorf("Destroy the token refuses = %v; want the C_DestroyObject error", err)
	}
	if err := tok.Destroy("taken", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Key("", []byte{9}); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("Key after Destroy = %v; want ErrObjectAbsent", err)
	}
}

// Sign and Decrypt report the module's errors, drop a session the module
// reports gone, and give a random key instead of a decryption failure
// only where crypto/rsa would: never for a closed module or a lost
// session.
func TestSignDecryptErrors(t *testing.T) {
	f := newFake("a")
	mod := fakeModuleHandle(t, f)
	tok, err := mod.Token("a", "1234")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tok.Generate("signer", nil, keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil || !ecdsa.VerifyASN1(signer.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Fatalf("sign = %v; want a valid DER signature", err)
	}
	for _, c := range []struct {
		method string
		code   uint
	}{{"SignInit", pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED}, {"Sign", pkcs11.CKR_DEVICE_REMOVED}} {
		f.failNext(c.method, ckr(c.code))
		_, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
		if !isCode(err, c.code) || !strings.Contains(err.Error(), `token "a": sign with key label "signer"`) || !strings.Contains(err.Error(), "C_"+c.method+":") {
			t.Errorf("sign when C_%s fails = %v; want its error, naming the token and key", c.method, err)
		}
	}
	if n := f.count("CloseSession"); n != 1 {
		t.Errorf("%d sessions closed; want the one C_Sign reported removed", n)
	}
	if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("sign after a lost session: %v", err)
	}

	dec, err := tok.Generate("secrets", nil, keyspec.RSA2048, keyspec.Decrypt)
	if err != nil {
		t.Fatal(err)
	}
	dataKey := bytes.Repeat([]byte{0x42}, 32)
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, dec.Public().(*rsa.PublicKey), dataKey)
	if err != nil {
		t.Fatal(err)
	}
	withLen := &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}
	if got, err := dec.Decrypt(rand.Reader, wrapped, withLen); err != nil || !bytes.Equal(got, dataKey) {
		t.Errorf("Decrypt = %x, %v; want the data key", got, err)
	}
	f.failNext("Decrypt", ckr(pkcs11.CKR_ENCRYPTED_DATA_INVALID))
	if got, err := dec.Decrypt(rand.Reader, wrapped, withLen); err != nil || len(got) != 32 || bytes.Equal(got, dataKey) {
		t.Errorf("Decrypt of bad data with SessionKeyLen = %x, %v; want a random 32-byte key", got, err)
	}
	f.failNext("Decrypt", ckr(pkcs11.CKR_ENCRYPTED_DATA_INVALID))
	if _, err := dec.Decrypt(rand.Reader, wrapped, nil); !isCode(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || !strings.Contains(err.Error(), `decrypt with key label "secrets"`) || !strings.Contains(err.Error(), "C_Decrypt:") {
		t.Errorf("Decrypt of bad data = %v; want the C_Decrypt error", err)
	}
	f.failNext("DecryptInit", ckr(pkcs11.CKR_TOKEN_NOT_PRESENT))
	if got, err := dec.Decrypt(rand.Reader, wrapped, withLen); !isCode(err, pkcs11.CKR_TOKEN_NOT_PRESENT) {
		t.Errorf("Decrypt with the token gone = %x, %v; want the error, not a random key", got, err)
	}
	if err := mod.Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := dec.Decrypt(rand.Reader, wrapped, withLen); !errors.Is(err, errClosed) {
		t.Errorf("Decrypt after Close = %x, %v; want errClosed, not a random key", got, err)
	}
	if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, errClosed) {
		t.Errorf("Sign after Close = %v; want errClosed", err)
	}
}
