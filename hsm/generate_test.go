//go:build cgo

package hsm

import (
	"crypto/ecdsa"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
)

func TestRefusals(t *testing.T) {
	tt, m, tok := openToken(t)
	if _, err := tok.Generate("taken", []byte{9}, keyspec.ECP256, keyspec.Sign); err != nil {
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
		if _, err := tok.Generate(c.label, c.id, keyspec.RSA2048, keyspec.Sign); !errors.Is(err, ErrObjectExists) {
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

// TestPrivateKeyNotExtractable: the token marks generated keys sensitive
// and non-extractable, refuses to reveal them, and keeps signing and
// decryption apart.
func TestPrivateKeyNotExtractable(t *testing.T) {
	_, _, tok := openToken(t)
	tests := []struct {
		kt     keyspec.Type
		u      keyspec.Usage
		secret uint
	}{
		{keyspec.RSA2048, keyspec.Sign, pkcs11.CKA_PRIVATE_EXPONENT},
		{keyspec.RSA2048, keyspec.Decrypt, pkcs11.CKA_PRIME_1},
		{keyspec.ECP256, keyspec.Sign, pkcs11.CKA_VALUE},
		{keyspec.ECP384, keyspec.Sign, pkcs11.CKA_VALUE},
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
			want := []bool{true, false, true, true, tc.u == keyspec.Sign, tc.u == keyspec.Decrypt}
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
			if isTrue(attrs[0].Value) != (tc.u == keyspec.Sign) || isTrue(attrs[1].Value) != (tc.u == keyspec.Decrypt) {
				t.Errorf("%s: public key VERIFY %v ENCRYPT %v", label, attrs[0].Value, attrs[1].Value)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
	}
}
