//go:build cgo

package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/testtool"
)

// openToken initialises a fresh SoftHSM2 token and logs in to it. The
// module is closed (finalised) when the test ends, so that the next
// test's C_Initialize reads that test's SOFTHSM2_CONF.
func openToken(t testing.TB) (*testtool.Token, *Module, *Token) {
	t.Helper()
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	return tt, m, tok
}

// pkcs11Tool runs pkcs11-tool against the test's token, logged in.
func pkcs11Tool(t *testing.T, tt *testtool.Token, args ...string) string {
	t.Helper()
	tool := testtool.Require(t, "pkcs11-tool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args = append([]string{"--module", tt.Module, "--token-label", tt.Label, "--login", "--pin", tt.PIN}, args...)
	out, err := exec.CommandContext(ctx, tool, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args[6:], " "), err, out)
	}
	return string(out)
}

// verify reports whether sig is a valid signature of digest by pub: ECDSA
// in ASN.1 DER, RSA PKCS#1 v1.5, or RSA-PSS with salt = hash length.
func verify(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte, pss bool) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return errors.New("ECDSA signature (ASN.1 DER) does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss {
			return rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig)
	}
	return errors.New("unexpected public key type")
}

// countObjects counts every object on the token.
func countObjects(t *testing.T, tok *Token) int {
	t.Helper()
	var n int
	err := tok.session(func(s pkcs11.SessionHandle) error {
		objs, err := tok.find(s, -1, "", nil, 1000)
		n = len(objs)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGenerateSignVerify(t *testing.T) {
	_, _, tok := openToken(t)
	d256, d384 := sha256.Sum256([]byte("message")), sha512.Sum384([]byte("message"))
	digests := []struct {
		h      crypto.Hash
		digest []byte
	}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}}
	tests := []struct {
		kt   KeyType
		rsa  bool
		bits int
	}{
		{RSA2048, true, 2048},
		{RSA3072, true, 3072},
		{ECP256, false, 256},
		{ECP384, false, 384},
	}
	for _, tc := range tests {
		t.Run(string(tc.kt), func(t *testing.T) {
			k, err := tok.Generate("sign-"+string(tc.kt), nil, tc.kt, Sign)
			if err != nil {
				t.Fatal(err)
			}
			if k.Usage() != Sign {
				t.Errorf("Usage = %v, want Sign", k.Usage())
			}
			switch pub := k.Public().(type) {
			case *rsa.PublicKey:
				if !tc.rsa || pub.N.BitLen() != tc.bits || pub.E != 65537 {
					t.Errorf("RSA-%d e=%d, want %s with e=65537", pub.N.BitLen(), pub.E, tc.kt)
				}
			case *ecdsa.PublicKey:
				if tc.rsa || pub.Curve.Params().BitSize != tc.bits {
					t.Errorf("EC key on %s, want %s", pub.Curve.Params().Name, tc.kt)
				}
			default:
				t.Fatalf("Public() = %T", pub)
			}
			for _, d := range digests {
				sig, err := k.Sign(rand.Reader, d.digest, d.h)
				if err != nil {
					t.Fatalf("sign %v: %v", d.h, err)
				}
				if err := verify(k.Public(), d.h, d.digest, sig, false); err != nil {
					t.Errorf("%v: %v", d.h, err)
				}
				if !tc.rsa {
					continue
				}
				for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, d.h.Size()} {
					sig, err := k.Sign(rand.Reader, d.digest, &rsa.PSSOptions{SaltLength: salt, Hash: d.h})
					if err != nil {
						t.Fatalf("sign PSS %v salt %d: %v", d.h, salt, err)
					}
					if err := verify(k.Public(), d.h, d.digest, sig, true); err != nil {
						t.Errorf("PSS %v salt %d: %v", d.h, salt, err)
					}
				}
			}
			if _, err := k.Sign(rand.Reader, d256[:], crypto.SHA384); err == nil || !strings.Contains(err.Error(), "digest of 32 bytes") {
				t.Errorf("a SHA-256 digest signed as SHA-384: %v; want a refusal", err)
			}
			if _, err := k.Sign(rand.Reader, d256[:], crypto.Hash(0)); err == nil || !strings.Contains(err.Error(), "unhashed") {
				t.Errorf("raw signature = %v; want a refusal", err)
			}
			if tc.rsa {
				if _, err := k.Sign(rand.Reader, d256[:], &rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "salt length 20") {
					t.Errorf("PSS with salt 20 = %v; want a refusal naming the salt length", err)
				}
			}
			if _, err := k.Decrypt(rand.Reader, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "may not decrypt") {
				t.Errorf("Decrypt with a signing key = %v; want a refusal", err)
			}
			// The same key found again by label and by ID.
			for _, c := range []struct {
				label string
				id    []byte
			}{{"sign-" + string(tc.kt), nil}, {"", k.id(t)}} {
				again, err := tok.Key(c.label, c.id)
				if err != nil {
					t.Fatalf("Key(%q, %x): %v", c.label, c.id, err)
				}
				if !again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
					t.Errorf("Key(%q, %x) has another public key", c.label, c.id)
				}
			}
		})
	}
}

// id reads a key's CKA_ID.
func (k *Key) id(t *testing.T) []byte {
	t.Helper()
	var id []byte
	err := k.token.session(func(s pkcs11.SessionHandle) error {
		attrs, err := k.token.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ID, nil)})
		if err == nil {
			id = attrs[0].Value
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestDecrypt(t *testing.T) {
	_, _, tok := openToken(t)
	k, err := tok.Generate("secrets", []byte("sm"), RSA2048, Decrypt)
	if err != nil {
		t.Fatal(err)
	}
	if k.Usage() != Decrypt {
		t.Errorf("Usage = %v, want Decrypt", k.Usage())
	}
	dataKey := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), dataKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []crypto.DecrypterOpts{nil, &rsa.PKCS1v15DecryptOptions{}, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}} {
		got, err := k.Decrypt(rand.Reader, wrapped, opts)
		if err != nil || !bytes.Equal(got, dataKey) {
			t.Errorf("Decrypt(%#v) = %q, %v; want the data key", opts, got, err)
		}
	}
	// A wrong ciphertext: an error, or a random key with SessionKeyLen.
	bad := bytes.Clone(wrapped)
	bad[0] ^= 0xff
	if _, err := k.Decrypt(rand.Reader, bad, nil); err == nil {
		t.Error("a damaged ciphertext decrypted")
	}
	if got, err := k.Decrypt(rand.Reader, bad, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}); err != nil || len(got) != 32 || bytes.Equal(got, dataKey) {
		t.Errorf("damaged ciphertext with SessionKeyLen = %x, %v; want a random 32-byte key", got, err)
	}
	if _, err := k.Decrypt(rand.Reader, wrapped, &rsa.OAEPOptions{Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "OAEP") {
		t.Errorf("OAEP = %v; want a refusal naming OAEP", err)
	}
	digest := sha256.Sum256(nil)
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "may not sign") {
		t.Errorf("Sign with a decryption key = %v; want a refusal", err)
	}
	before := countObjects(t, tok)
	for _, kt := range []KeyType{ECP256, ECP384} {
		if _, err := tok.Generate("ec-secrets", nil, kt, Decrypt); err == nil || !strings.Contains(err.Error(), "must be RSA") {
			t.Errorf("%s decryption key = %v; want a refusal", kt, err)
		}
	}
	if _, err := tok.Generate("dsa", nil, KeyType("dsa1024"), Sign); err == nil || !strings.Contains(err.Error(), `"dsa1024"`) {
		t.Errorf("unknown key type = %v; want a refusal naming it", err)
	}
	if n := countObjects(t, tok); n != before {
		t.Errorf("refused Generate calls changed the token: %d objects, had %d", n, before)
	}
}

// TestKeysMadeByAnotherTool: keys pkcs11-tool made are found by label and
// by ID and work, and their public keys are read from wherever the token
// has them: the public key object, the RSA private key's attributes, or
// a certificate.
func TestKeysMadeByAnotherTool(t *testing.T) {
	tt, _, tok := openToken(t)
	pkcs11Tool(t, tt, "--keypairgen", "--key-type", "EC:prime256v1", "--label", "tool-ec", "--id", "01")
	pkcs11Tool(t, tt, "--keypairgen", "--key-type", "rsa:2048", "--label", "tool-rsa", "--id", "02")
	digest := sha256.Sum256([]byte("m"))
	lookups := []struct {
		label string
		id    []byte
	}{
		{"tool-ec", nil}, {"", []byte{1}}, {"tool-ec", []byte{1}},
		{"tool-rsa", nil}, {"", []byte{2}},
	}
	pubs := map[string]crypto.PublicKey{}
	for _, c := range lookups {
		k, err := tok.Key(c.label, c.id)
		if err != nil {
			t.Fatalf("Key(%q, %x): %v", c.label, c.id, err)
		}
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if err := verify(k.Public(), crypto.SHA256, digest[:], sig, false); err != nil {
			t.Errorf("Key(%q, %x): %v", c.label, c.id, err)
		}
		pubs[string(k.id(t))] = k.Public()
	}
	if _, err := tok.Key("tool-ec", []byte{2}); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("label of one key with the ID of another = %v; want ErrObjectAbsent", err)
	}

	// A certificate for the EC key, signed by the key itself in the token.
	ec, err := tok.Key("tool-ec", nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tool-ec"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ec.Public(), ec)
	if err != nil {
		t.Fatalf("self-sign with the token key: %v", err)
	}
	certFile := filepath.Join(t.TempDir(), "cert.der")
	if err := os.WriteFile(certFile, der, 0o600); err != nil {
		t.Fatal(err)
	}
	pkcs11Tool(t, tt, "--write-object", certFile, "--type", "cert", "--id", "01", "--label", "tool-ec")
	// Without their public key objects.
	pkcs11Tool(t, tt, "--delete-object", "--type", "pubkey", "--id", "01")
	pkcs11Tool(t, tt, "--delete-object", "--type", "pubkey", "--id", "02")
	for _, c := range []struct {
		what string
		id   []byte
	}{{"EC key, public key from its certificate", []byte{1}}, {"RSA key, public key from the private key", []byte{2}}} {
		k, err := tok.Key("", c.id)
		if err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pubs[string(c.id)]) {
			t.Errorf("%s: another public key", c.what)
		}
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err == nil {
			err = verify(k.Public(), crypto.SHA256, digest[:], sig, false)
		}
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	tt, m, tok := openToken(t)
	if _, err := tok.Generate("taken", []byte{9}, ECP256, Sign); err != nil {
		t.Fatal(err)
	}
	_, err := m.Token("no-such-token", "1234")
	if !errors.Is(err, ErrTokenAbsent) {
		t.Errorf("absent token = %v; want ErrTokenAbsent", err)
	}
	for _, want := range []string{`"no-such-token"`, tt.Module, `"ggcore-test"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("absent token = %v; want it to name %s", err, want)
		}
	}
	for _, c := range []struct {
		label string
		id    []byte
		want  string
	}{{"no-such-key", nil, `"no-such-key"`}, {"", []byte{7, 7}, "id 0707"}, {"taken", []byte{7}, `label "taken" id 07`}} {
		if _, err := tok.Key(c.label, c.id); !errors.Is(err, ErrObjectAbsent) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `token "ggcore-test"`) {
			t.Errorf("Key(%q, %x) = %v; want ErrObjectAbsent naming %s and the token", c.label, c.id, err, c.want)
		}
	}
	if _, err := tok.Key("", nil); err == nil {
		t.Error("Key without label or ID: no error")
	}
	before := countObjects(t, tok)
	for _, c := range []struct {
		label string
		id    []byte
	}{{"taken", nil}, {"taken", []byte{10}}, {"other", []byte{9}}} {
		if _, err := tok.Generate(c.label, c.id, RSA2048, Sign); !errors.Is(err, ErrObjectExists) {
			t.Errorf("Generate(%q, %x) over an existing key = %v; want ErrObjectExists", c.label, c.id, err)
		}
	}
	if n := countObjects(t, tok); n != before {
		t.Errorf("refused Generate calls changed the token: %d objects, had %d", n, before)
	}
	if k, err := tok.Key("taken", nil); err != nil {
		t.Errorf("the existing key after refused Generate calls: %v", err)
	} else if _, ok := k.Public().(*ecdsa.PublicKey); !ok {
		t.Errorf("the existing key became %T", k.Public())
	}
	if err := tok.Destroy("taken", nil); err != nil {
		t.Fatal(err)
	}
	if n := countObjects(t, tok); n != before-2 {
		t.Errorf("Destroy left %d objects of %d; want both halves gone", n, before)
	}
	if _, err := tok.Key("taken", nil); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("Key after Destroy = %v; want ErrObjectAbsent", err)
	}
	if err := tok.Destroy("taken", nil); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("second Destroy = %v; want ErrObjectAbsent", err)
	}
}

// TestTokenAbsentListsLabels: the error lists every token the module has.
func TestTokenAbsentListsLabels(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "first", "1234")
	testtool.NewSoftHSMToken(t, "second", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Token("third", "1234")
	if !errors.Is(err, ErrTokenAbsent) || !strings.Contains(err.Error(), `tokens found: "first", "second"`) {
		t.Errorf("absent token = %v; want ErrTokenAbsent listing first and second", err)
	}
	if _, err := m.Token("second", "1234"); err != nil {
		t.Errorf("second token: %v", err)
	}
}

// TestWrongPIN: a wrong PIN is ErrWrongPIN, never printed, and the right
// PIN works afterwards.
func TestWrongPIN(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "pin-test", "5678")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, pin := range []string{"98765432", "qq"} {
		_, err = m.Token(tt.Label, pin)
		if !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), pin) {
			t.Errorf("wrong PIN = %v; want ErrWrongPIN without the PIN", err)
		}
	}
	if _, err := m.Token(tt.Label, ""); err == nil || !strings.Contains(err.Error(), "needs the user PIN") {
		t.Errorf("no PIN = %v; want a refusal", err)
	}
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("right PIN after wrong ones: %v", err)
	}
	if _, err := tok.Generate("k", nil, ECP256, Sign); err != nil {
		t.Errorf("generate after login: %v", err)
	}
	if _, err := m.Token(tt.Label, "98765432"); !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), "98765432") {
		t.Errorf("another PIN for a logged-in token = %v; want ErrWrongPIN without the PIN", err)
	}
}

// TestAlreadyLoggedIn: a token this process logged in already (here
// behind the package's back) is logged in, not an error; two Token calls
// share one token.
func TestAlreadyLoggedIn(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slots, err := m.m.ctx.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.m.ctx.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer m.m.ctx.CloseSession(s)
	if err := m.m.ctx.Login(s, pkcs11.CKU_USER, tt.PIN); err != nil {
		t.Fatal(err)
	}
	first, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("Token on a logged-in token: %v", err)
	}
	second, err := m.Token(tt.Label, tt.PIN)
	if err != nil || second != first {
		t.Errorf("second Token = %p, %v; want the first one (%p)", second, err, first)
	}
	if _, err := second.Generate("k", nil, ECP256, Sign); err != nil {
		t.Error(err)
	}
}

// TestPrivateKeyNotExtractable: the token marks generated keys sensitive
// and non-extractable, refuses to reveal them, and keeps signing and
// decryption apart.
func TestPrivateKeyNotExtractable(t *testing.T) {
	_, _, tok := openToken(t)
	tests := []struct {
		kt     KeyType
		u      Usage
		secret uint
	}{
		{RSA2048, Sign, pkcs11.CKA_PRIVATE_EXPONENT},
		{RSA2048, Decrypt, pkcs11.CKA_PRIME_1},
		{ECP256, Sign, pkcs11.CKA_VALUE},
		{ECP384, Sign, pkcs11.CKA_VALUE},
	}
	for i, tc := range tests {
		label := string(tc.kt) + "-" + []string{"sign", "decrypt"}[tc.u]
		id := []byte{byte(0xa0 + i)}
		k, err := tok.Generate(label, id, tc.kt, tc.u)
		if err != nil {
			t.Fatal(err)
		}
		err = tok.session(func(s pkcs11.SessionHandle) error {
			attrs, err := tok.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
				pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, nil), pkcs11.NewAttribute(pkcs11.CKA_TOKEN, nil),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, nil), pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, nil),
			})
			if err != nil {
				return err
			}
			got := make([]bool, len(attrs))
			for i, a := range attrs {
				got[i] = isTrue(a.Value)
			}
			want := []bool{true, false, true, true, tc.u == Sign, tc.u == Decrypt}
			if !slices.Equal(got, want) {
				t.Errorf("%s: SENSITIVE, EXTRACTABLE, PRIVATE, TOKEN, SIGN, DECRYPT = %v; want %v", label, got, want)
			}
			if _, err := tok.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{pkcs11.NewAttribute(tc.secret, nil)}); !isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
				t.Errorf("%s: reading the private value = %v; want CKR_ATTRIBUTE_SENSITIVE", label, err)
			}
			pubs, err := tok.find(s, pkcs11.CKO_PUBLIC_KEY, label, id, 2)
			if err != nil || len(pubs) != 1 {
				return errors.New("public key with the same label and ID missing")
			}
			attrs, err = tok.ctx.GetAttributeValue(s, pubs[0], []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, nil), pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, nil),
			})
			if err != nil {
				return err
			}
			if isTrue(attrs[0].Value) != (tc.u == Sign) || isTrue(attrs[1].Value) != (tc.u == Decrypt) {
				t.Errorf("%s: public key VERIFY %v ENCRYPT %v", label, attrs[0].Value, attrs[1].Value)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
	}
}

// TestModuleSharedAcrossOpens: two handles on one module share its
// initialisation and login; closing one leaves the other working; after
// the last Close, keys fail cleanly.
func TestModuleSharedAcrossOpens(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	first, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenModule(filepath.Join(filepath.Dir(tt.Module), ".", filepath.Base(tt.Module)))
	if err != nil {
		t.Fatal(err)
	}
	if second.m != first.m {
		t.Fatal("a second OpenModule of the same path loaded the module again")
	}
	tok, err := first.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.Generate("shared", nil, ECP256, Sign)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := second.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("Token through the second handle: %v", err)
	}
	if _, err := tok2.Key("shared", nil); err != nil {
		t.Errorf("key through the second handle: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("second Close of a handle: %v", err)
	}
	if _, err := first.Token(tt.Label, tt.PIN); err == nil {
		t.Error("Token through a closed handle: no error")
	}
	digest := sha256.Sum256([]byte("m"))
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("sign after the other handle closed: %v", err)
	}
	if _, err := second.Token(tt.Label, tt.PIN); err != nil {
		t.Errorf("Token after the other handle closed: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatalf("last Close: %v", err)
	}
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, errClosed) {
		t.Errorf("sign after the last Close = %v; want an error saying the module is closed", err)
	}
	// A new OpenModule initialises the module afresh.
	third, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	tok3, err := third.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k3, err := tok3.Key("shared", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := k3.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("sign after reopening: %v", err)
	}
}

// TestConcurrentSigners: 64 goroutines sign at once with two keys; the
// session pool stays within its bound.
func TestConcurrentSigners(t *testing.T) {
	_, _, tok := openToken(t)
	var keys []*Key
	for _, kt := range []KeyType{ECP256, RSA2048} {
		k, err := tok.Generate("busy-"+string(kt), nil, kt, Sign)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			k := keys[i%2]
			for j := range 4 {
				digest := sha256.Sum256([]byte{byte(i), byte(j)})
				sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err == nil {
					err = verify(k.Public(), crypto.SHA256, digest[:], sig, false)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tok.mu.Lock()
	open := len(tok.idle)
	tok.mu.Unlock()
	if open < 2 || open > maxSessions {
		t.Errorf("%d sessions open after 64 concurrent signers; want 2..%d", open, maxSessions)
	}
}

// TestCloseWhileSigning: closing the module under running signers waits
// for the signatures in flight; later ones fail with a clear error.
func TestCloseWhileSigning(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.Generate("k", nil, ECP256, Sign)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var signed sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		signed.Add(1)
		wg.Go(func() {
			first := true
			for {
				digest := sha256.Sum256([]byte("m"))
				_, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
				if first {
					signed.Done()
					first = false
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	signed.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errClosed) || !strings.Contains(err.Error(), "closed") {
			t.Errorf("sign during Close = %v; want only 'module is closed' errors", err)
		}
	}
}

// signerOnly hides Key's Decrypt method, as core/keys does: in TLS 1.2,
// crypto/tls takes every crypto.Decrypter for an RSA key-exchange key and
// fails handshakes with an EC one ("unsupported decryption key type").
type signerOnly struct{ crypto.Signer }

// TestTLSHandshake: token keys serve TLS 1.2 and 1.3 handshakes, so their
// signatures are in the form crypto/tls expects (ECDSA in DER, RSA-PSS in
// TLS 1.3).
func TestTLSHandshake(t *testing.T) {
	_, _, tok := openToken(t)
	for _, kt := range []KeyType{ECP256, ECP384, RSA2048} {
		k, err := tok.Generate("tls-"+string(kt), nil, kt, Sign)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
			DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			t.Fatalf("%s: self-sign: %v", kt, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(string(kt)+"/"+tls.VersionName(version), func(t *testing.T) {
				c, s := net.Pipe()
				defer c.Close()
				defer s.Close()
				srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: signerOnly{k}}},
					MinVersion: version, MaxVersion: version})
				cli := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: version, MaxVersion: version})
				done := make(chan error, 1)
				go func() { done <- srv.Handshake() }()
				if err := cli.Handshake(); err != nil {
					t.Fatalf("client handshake: %v (server: %v)", err, <-done)
				}
				if err := <-done; err != nil {
					t.Fatalf("server handshake: %v", err)
				}
			})
		}
	}
}

func TestOpenModuleRefusals(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ path, want string }{
		{"", "no PKCS#11 module"},
		{"/nonexistent/libp11.so", "/nonexistent/libp11.so: stat /nonexistent/libp11.so: no such file"},
		{"./nonexistent.so", "nonexistent.so: no such file"},
		{"libno-such-pkcs11-module.so", "libno-such-pkcs11-module.so: cannot load it as a PKCS#11 module"},
		{"/etc/hostname", "/etc/hostname: cannot load it as a PKCS#11 module"},
		{dir, "is a directory"},
	}
	for _, tc := range tests {
		if _, err := OpenModule(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenModule(%q) = %v; want an error containing %q", tc.path, err, tc.want)
		}
	}
	// A shared library that is no PKCS#11 module (it has no
	// C_GetFunctionList).
	if _, err := os.Stat("/lib/x86_64-linux-gnu/libz.so.1"); err == nil {
		if _, err := OpenModule("/lib/x86_64-linux-gnu/libz.so.1"); err == nil || !strings.Contains(err.Error(), "cannot load it as a PKCS#11 module") {
			t.Errorf("OpenModule(libz) = %v; want a refusal", err)
		}
	}
	modules.Lock()
	n := len(modules.byPath)
	modules.Unlock()
	if n != 0 {
		t.Errorf("failed OpenModule calls left %d modules registered", n)
	}
}

func TestParseECPublic(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := key.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	wrapped, _ := asn1.Marshal(raw)
	p256, _ := asn1.Marshal(oidP256)
	p384, _ := asn1.Marshal(oidP384)
	p521, _ := asn1.Marshal(oidP521)
	tests := []struct {
		name          string
		params, point []byte
		want          string // error text; "" for the key
	}{
		{"DER OCTET STRING", p256, wrapped, ""},
		{"raw point", p256, raw, ""},
		{"wrong curve", p384, wrapped, "P-384 point"},
		{"P-521 point not checked here", p521, wrapped, "not an uncompressed P-521 point"},
		{"no point", p256, nil, "no CKA_EC_POINT"},
		{"explicit parameters", []byte{0x30, 0x00}, wrapped, "not a named curve"},
		{"compressed point", p256, append([]byte{2}, raw[1:33]...), "P-256 point"},
	}
	for _, tc := range tests {
		pub, err := parseECPublic(pkcs11.CKK_EC, tc.params, tc.point)
		if tc.want == "" {
			if err != nil || !key.PublicKey.Equal(pub) {
				t.Errorf("%s: %v, %v; want the key", tc.name, pub, err)
			}
		} else if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error containing %q", tc.name, err, tc.want)
		}
	}
}

func TestECDSADER(t *testing.T) {
	raw := append(bytes.Repeat([]byte{0}, 31), 1)
	raw = append(raw, append([]byte{0x80}, bytes.Repeat([]byte{0}, 31)...)...)
	der, err := ecdsaDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 || sig.R.Int64() != 1 || sig.S.Cmp(new(big.Int).Lsh(big.NewInt(1), 255)) != 0 {
		t.Errorf("ecdsaDER = %x (%v): want SEQUENCE{1, 2^255}", der, err)
	}
	if _, err := ecdsaDER([]byte{1, 2, 3}); err == nil {
		t.Error("odd-length signature accepted")
	}
}

// benchSign compares signing with a SoftHSM key and with an in-memory
// key of the same type, one signer at a time and in parallel.
func benchSign(b *testing.B, kt KeyType, memory crypto.Signer) {
	_, _, tok := openToken(b)
	k, err := tok.Generate("bench", nil, kt, Sign)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	for _, s := range []struct {
		name   string
		signer crypto.Signer
	}{{"softhsm", k}, {"memory", memory}} {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSignECP256(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, ECP256, key)
}

func BenchmarkSignRSA2048(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, RSA2048, key)
}
