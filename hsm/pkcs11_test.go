//go:build cgo

package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/testtool"
)

// openToken initialises a fresh SoftHSM2 token and logs in to it; the
// module is closed (finalised) when the test ends.
func openToken(t *testing.T) (*testtool.Token, *Module, *Token) {
	t.Helper()
	tt := testtool.NewSoftHSMToken(t, "hsm-test", "1234")
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

// verify checks a signature of digest with pub.
func verify(t *testing.T, pub crypto.PublicKey, h crypto.Hash, digest, sig []byte, pss bool) {
	t.Helper()
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			t.Error("ECDSA signature (DER) does not verify")
		}
	case *rsa.PublicKey:
		var err error
		if pss {
			err = rsa.VerifyPSS(pub, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			err = rsa.VerifyPKCS1v15(pub, h, digest, sig)
		}
		if err != nil {
			t.Errorf("RSA signature (pss=%v): %v", pss, err)
		}
	default:
		t.Fatalf("public key %T", pub)
	}
}

func TestGenerateAndSign(t *testing.T) {
	_, _, tok := openToken(t)
	tests := []struct {
		kt   KeyType
		bits int
	}{{RSA2048, 2048}, {RSA3072, 3072}, {ECP256, 256}, {ECP384, 384}}
	for _, tt := range tests {
		t.Run(string(tt.kt), func(t *testing.T) {
			k, err := tok.Generate("sign-"+string(tt.kt), nil, tt.kt, Sign)
			if err != nil {
				t.Fatal(err)
			}
			if k.Usage() != Sign {
				t.Errorf("Usage = %v, want Sign", k.Usage())
			}
			switch pub := k.Public().(type) {
			case *rsa.PublicKey:
				if pub.N.BitLen() != tt.bits {
					t.Errorf("RSA-%d, want %d bits", pub.N.BitLen(), tt.bits)
				}
			case *ecdsa.PublicKey:
				if pub.Curve.Params().BitSize != tt.bits {
					t.Errorf("curve %s, want %d bits", pub.Curve.Params().Name, tt.bits)
				}
			}
			d256, d384 := sha256.Sum256([]byte("m")), sha512.Sum384([]byte("m"))
			for _, c := range []struct {
				h      crypto.Hash
				digest []byte
			}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}} {
				sig, err := k.Sign(rand.Reader, c.digest, c.h)
				if err != nil {
					t.Fatalf("sign %v: %v", c.h, err)
				}
				verify(t, k.Public(), c.h, c.digest, sig, false)
				if _, isRSA := k.Public().(*rsa.PublicKey); isRSA {
					sig, err := k.Sign(rand.Reader, c.digest, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: c.h})
					if err != nil {
						t.Fatalf("sign PSS %v: %v", c.h, err)
					}
					verify(t, k.Public(), c.h, c.digest, sig, true)
				}
			}
			if _, err := k.Sign(rand.Reader, d256[:], crypto.SHA384); err == nil {
				t.Error("a SHA-256 digest signed as SHA-384")
			}
			if _, err := k.Decrypt(rand.Reader, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "may not decrypt") {
				t.Errorf("Decrypt with a signing key = %v; want a refusal", err)
			}
		})
	}
}

func TestDecrypt(t *testing.T) {
	_, _, tok := openToken(t)
	k, err := tok.Generate("secrets", nil, RSA2048, Decrypt)
	if err != nil {
		t.Fatal(err)
	}
	dataKey := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), dataKey)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Decrypt(rand.Reader, wrapped, nil)
	if err != nil || string(got) != string(dataKey) {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	if _, err := k.Decrypt(rand.Reader, wrapped, &rsa.OAEPOptions{Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "OAEP") {
		t.Errorf("OAEP = %v; want a refusal naming OAEP", err)
	}
	digest := sha256.Sum256(nil)
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "may not sign") {
		t.Errorf("Sign with a decryption key = %v; want a refusal", err)
	}
	if _, err := tok.Generate("ec-secrets", nil, ECP256, Decrypt); err == nil || !strings.Contains(err.Error(), "must be RSA") {
		t.Errorf("EC decryption key = %v; want a refusal", err)
	}
}

// TestKeyMadeByAnotherTool: a key pkcs11-tool made is found by label and
// by ID, and signs.
func TestKeyMadeByAnotherTool(t *testing.T) {
	tt, _, tok := openToken(t)
	tool := testtool.Require(t, "pkcs11-tool")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "--module", tt.Module, "--token-label", tt.Label, "--login", "--pin", tt.PIN,
		"--keypairgen", "--key-type", "EC:prime256v1", "--label", "opensc-key", "--id", "0102").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool: %v\n%s", err, out)
	}
	for _, c := range []struct {
		label string
		id    []byte
	}{{"opensc-key", nil}, {"", []byte{1, 2}}, {"opensc-key", []byte{1, 2}}} {
		k, err := tok.Key(c.label, c.id)
		if err != nil {
			t.Fatalf("Key(%q, %x): %v", c.label, c.id, err)
		}
		digest := sha256.Sum256([]byte("m"))
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		verify(t, k.Public(), crypto.SHA256, digest[:], sig, false)
	}
}

func TestRefusals(t *testing.T) {
	_, m, tok := openToken(t)
	if _, err := tok.Generate("taken", []byte{9}, ECP256, Sign); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Token("no-such-token", "1234"); !errors.Is(err, ErrTokenAbsent) || !strings.Contains(err.Error(), `"hsm-test"`) {
		t.Errorf("absent token = %v; want ErrTokenAbsent listing the tokens found", err)
	}
	if _, err := tok.Key("no-such-key", nil); !errors.Is(err, ErrObjectAbsent) || !strings.Contains(err.Error(), "no-such-key") {
		t.Errorf("absent key = %v; want ErrObjectAbsent naming it", err)
	}
	for _, c := range []struct {
		label string
		id    []byte
	}{{"taken", nil}, {"other", []byte{9}}} {
		if _, err := tok.Generate(c.label, c.id, ECP256, Sign); !errors.Is(err, ErrObjectExists) {
			t.Errorf("Generate(%q, %x) over an existing key = %v; want ErrObjectExists", c.label, c.id, err)
		}
	}
	if _, err := tok.Key("other", nil); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("a refused Generate made a key: %v", err)
	}
	if err := tok.Destroy("taken", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Key("taken", nil); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("Key after Destroy = %v; want ErrObjectAbsent", err)
	}
	if err := tok.Destroy("taken", nil); !errors.Is(err, ErrObjectAbsent) {
		t.Errorf("second Destroy = %v; want ErrObjectAbsent", err)
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
	_, err = m.Token(tt.Label, "0000")
	if !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), "0000") {
		t.Errorf("wrong PIN = %v; want ErrWrongPIN without the PIN", err)
	}
	if _, err := m.Token(tt.Label, tt.PIN); err != nil {
		t.Errorf("right PIN after a wrong one: %v", err)
	}
}

// TestPrivateKeyNotExtractable: the token refuses to reveal a generated
// private key.
func TestPrivateKeyNotExtractable(t *testing.T) {
	_, _, tok := openToken(t)
	for _, kt := range []KeyType{RSA2048, ECP256} {
		k, err := tok.Generate("secret-"+string(kt), nil, kt, Sign)
		if err != nil {
			t.Fatal(err)
		}
		err = tok.session(func(s pkcs11.SessionHandle) error {
			attrs, err := tok.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil), pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			})
			if err != nil {
				return err
			}
			if !isTrue(attrs[0].Value) || isTrue(attrs[1].Value) {
				t.Errorf("%s: CKA_SENSITIVE %v CKA_EXTRACTABLE %v; want true, false", kt, attrs[0].Value, attrs[1].Value)
			}
			secret := uint(pkcs11.CKA_VALUE)
			if kt == RSA2048 {
				secret = pkcs11.CKA_PRIVATE_EXPONENT
			}
			if _, err := tok.ctx.GetAttributeValue(s, k.obj, []*pkcs11.Attribute{pkcs11.NewAttribute(secret, nil)}); !isCode(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
				t.Errorf("%s: reading the private value = %v; want CKR_ATTRIBUTE_SENSITIVE", kt, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestModuleSharedAcrossOpens: two handles on one module share its
// initialisation and login; closing one leaves the other working.
func TestModuleSharedAcrossOpens(t *testing.T) {
	tt, _, tok := openToken(t)
	k, err := tok.Generate("shared", nil, ECP256, Sign)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Token(tt.Label, tt.PIN); err != nil {
		t.Fatalf("second login (already logged in is success): %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("sign after the other handle closed: %v", err)
	}
}

func TestConcurrentSigners(t *testing.T) {
	_, _, tok := openToken(t)
	keys := make([]*Key, 0, 2)
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
			digest := sha256.Sum256([]byte{byte(i)})
			sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err == nil {
				switch pub := k.Public().(type) {
				case *ecdsa.PublicKey:
					if !ecdsa.VerifyASN1(pub, digest[:], sig) {
						err = errors.New("bad ECDSA signature")
					}
				case *rsa.PublicKey:
					err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
				}
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestOpenModuleRefusals(t *testing.T) {
	for _, c := range []struct{ path, want string }{
		{"relative.so", "absolute"},
		{"/nonexistent/libp11.so", "no such file"},
		{"/etc/hostname", "cannot load it as a PKCS#11 module"},
	} {
		if _, err := OpenModule(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenModule(%s) = %v; want an error containing %q", c.path, err, c.want)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	tt := testtool.NewSoftHSMToken(b, "bench", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	for _, kt := range []KeyType{ECP256, RSA2048} {
		k, err := tok.Generate("bench-"+string(kt), nil, kt, Sign)
		if err != nil {
			b.Fatal(err)
		}
		var soft crypto.Signer
		if kt == ECP256 {
			soft, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		} else {
			soft, _ = rsa.GenerateKey(rand.Reader, 2048)
		}
		for _, s := range []struct {
			name   string
			signer crypto.Signer
		}{{"softhsm", k}, {"memory", soft}} {
			b.Run(string(kt)+"/"+s.name, func(b *testing.B) {
				for b.Loop() {
					if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(string(kt)+"/"+s.name+"/parallel", func(b *testing.B) {
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
}
