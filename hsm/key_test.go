//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

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
	offCurve := append([]byte(nil), raw...)
	offCurve[len(offCurve)-1] ^= 1
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
		{"point off the curve", p256, offCurve, "P-256 point"},
		{"point (0, 0)", p256, append([]byte{4}, make([]byte, len(raw)-1)...), "P-256 point"},
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
