package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
)

func pemOf(t *testing.T, typ string, der []byte) []byte {
	t.Helper()
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf(t, "PRIVATE KEY", der)
}

func TestParsePEM(t *testing.T) {
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	sec1 := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemOf(t, "EC PRIVATE KEY", der)
	}
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"},
		Bytes:   x509.MarshalPKCS1PrivateKey(rsa2048)})
	tests := []struct {
		name    string
		data    []byte
		want    string // "" = accepted; else a substring of the error
		wantErr error
	}{
		{"PKCS#1 RSA-2048", pemOf(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsa2048)), "", nil},
		{"PKCS#8 RSA-2048", pkcs8(t, rsa2048), "", nil},
		{"SEC1 P-256", sec1(p256), "", nil},
		{"PKCS#8 P-384", pkcs8(t, p384), "", nil},
		{"RSA-1024", pkcs8(t, rsa1024), "RSA-1024 key: RSA keys must be at least 2048 bits", ErrUnsupportedKey},
		{"P-224", pkcs8(t, p224), "P-224", ErrUnsupportedKey},
		{"P-521 SEC1", sec1(p521), "P-521", ErrUnsupportedKey},
		{"Ed25519", pkcs8(t, ed), "Ed25519", ErrUnsupportedKey},
		{"encrypted PEM", encrypted, "encrypted PEM", ErrUnsupportedKey},
		{"PKCS#8 encrypted", pemOf(t, "ENCRYPTED PRIVATE KEY", []byte{1, 2}), "encrypted PEM", ErrUnsupportedKey},
		{"DSA", pemOf(t, "DSA PRIVATE KEY", []byte{1}), "DSA key", ErrUnsupportedKey},
		{"TSS2", pemOf(t, "TSS2 PRIVATE KEY", []byte{1}), "TPM-wrapped", ErrHardwareKey},
		{"certificate, not a key", pemOf(t, "CERTIFICATE", []byte{1}), "not a private key", nil},
		{"two keys", append(pkcs8(t, p256), pkcs8(t, p256)...), "more than one PEM block", nil},
		{"not PEM", []byte("hello"), "no PEM block", nil},
		{"garbage DER", pemOf(t, "PRIVATE KEY", []byte{1, 2, 3}), "PRIVATE KEY", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := ParsePEM(tt.data)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if _, isRSA := key.Public().(*rsa.PublicKey); isRSA {
					if _, ok := key.(crypto.Decrypter); !ok {
						t.Error("RSA signer is not a crypto.Decrypter")
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v is not %v", err, tt.wantErr)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	path := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(path, pkcs8(t, p256), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("file://" + path); err != nil {
		t.Fatalf("Open file: %v", err)
	}
	tests := []struct {
		ref, want string
		is        error
	}{
		{"file://" + filepath.Join(dir, "missing.pem"), "no such file", nil},
		{path, "bare path", nil},
		{"tpm2:handle=0x81000002", "key store", ErrHardwareKey},
		{"handle:0x81000002", "key store", ErrHardwareKey},
		{"pkcs11:object=core;type=private;token=gg?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234", "key store", ErrHardwareKey},
	}
	for _, tt := range tests {
		_, err := Open(tt.ref)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q) = %v, want error containing %q", tt.ref, err, tt.want)
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("Open(%q) error %v is not %v", tt.ref, err, tt.is)
		}
		if err != nil && strings.Contains(err.Error(), "1234") {
			t.Errorf("Open(%q) error leaks the PIN: %v", tt.ref, err)
		}
	}
}

func TestCheckPrincipal(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := CheckPrincipal("SecretsManager", p256.Public()); err == nil ||
		!strings.Contains(err.Error(), "EC P-256 key given, SecretsManager requires RSA >= 2048") {
		t.Errorf("SecretsManager with EC key: %v", err)
	}
	for _, p := range []string{"IoTCertificate", "MQTTServerCertificate"} {
		if err := CheckPrincipal(p, p256.Public()); err != nil {
			t.Errorf("%s with P-256: %v", p, err)
		}
	}
	if err := CheckPrincipal("SecretsManager", rsa2048.Public()); err != nil {
		t.Errorf("SecretsManager with RSA-2048: %v", err)
	}
}

func TestGenerateAndMarshalRoundTrip(t *testing.T) {
	for _, typ := range keyspec.Types {
		t.Run(string(typ), func(t *testing.T) {
			key, err := typ.Generate()
			if err != nil {
				t.Fatal(err)
			}
			data, err := MarshalPEM(key)
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParsePEM(data)
			if err != nil {
				t.Fatalf("ParsePEM of MarshalPEM: %v", err)
			}
			if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("round trip changed the key")
			}
		})
	}
}

func FuzzParsePEM(f *testing.F) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(p256)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte{})
	sec1, _ := x509.MarshalECPrivateKey(p256)
	f.Add(append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})...))
	// PKCS#8 Ed448 (an algorithm the standard library does not load).
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMEcCAQAwBQYDK2VxBDsEOQ==\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := ParsePEM(data)
		if err != nil {
			return
		}
		// Whatever is accepted is a key ggcore may use.
		if err := Check(key.Public()); err != nil {
			t.Fatalf("accepted a key Check refuses: %v", err)
		}
	})
}
