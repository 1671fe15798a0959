package keys

//lint:file-ignore SA1019 secrets are wrapped with RSA PKCS #1 v1.5 here because Greengrass v1 wraps them so, and ggcore must decrypt them.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/hsm"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tpm"
)

// exercise signs with a signing key and verifies the signature, or
// unwraps a PKCS#1 v1.5 envelope with a decryption key.
func exercise(t *testing.T, k crypto.Signer) {
	t.Helper()
	sign, decrypt := KeyUsage(k)
	if sign {
		digest := sha256.Sum256([]byte("ggcore"))
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		switch pub := k.Public().(type) {
		case *ecdsa.PublicKey:
			if !ecdsa.VerifyASN1(pub, digest[:], sig) {
				t.Error("ECDSA signature does not verify")
			}
		case *rsa.PublicKey:
			if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
				t.Errorf("RSA signature: %v", err)
			}
		}
	}
	if decrypt {
		secret := []byte("a 32-byte data key for a secret!")
		wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), secret)
		if err != nil {
			t.Fatal(err)
		}
		got, err := k.(crypto.Decrypter).Decrypt(rand.Reader, wrapped, nil)
		if err != nil || string(got) != string(secret) {
			t.Errorf("decrypt = %q, %v; want the data key", got, err)
		}
	}
}

func TestStoreTPM(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")
	dir := t.TempDir()
	s := NewStore(StoreOptions{TPMDevice: sw.Device})
	defer s.Close()
	tests := []struct {
		name      string
		ref       string
		kt        keyspec.Type
		usage     keyspec.Usage
		principal string
	}{
		{"TSS2 file, EC P-256", "file://" + filepath.Join(dir, "iot.pem"), keyspec.ECP256, keyspec.Sign, "IoTCertificate"},
		{"TSS2 file, RSA-2048 decryption", "file://" + filepath.Join(dir, "secrets.pem"), keyspec.RSA2048, keyspec.Decrypt, "SecretsManager"},
		{"persistent handle, RSA-2048", "tpm2:handle=0x81000020", keyspec.RSA2048, keyspec.Sign, "MQTTServerCertificate"},
		{"persistent handle, EC P-384", "handle:0x81000021", keyspec.ECP384, keyspec.Sign, "MQTTServerCertificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := s.Create(tt.ref, tt.kt, tt.usage)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if StoreOf(k) != keyspec.TPM || !IsHardware(k) {
				t.Errorf("StoreOf = %q, IsHardware = %v; want tpm, true", StoreOf(k), IsHardware(k))
			}
			if err := CheckKey(tt.principal, k); err != nil {
				t.Errorf("CheckKey(%s): %v", tt.principal, err)
			}
			_, isDecrypter := k.(crypto.Decrypter)
			if isDecrypter != (tt.usage == keyspec.Decrypt) {
				t.Errorf("crypto.Decrypter = %v; want it only for decryption keys (crypto/tls takes every Decrypter for an RSA key-exchange key)", isDecrypter)
			}
			exercise(t, k)
			opened, err := s.Open(tt.ref)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !opened.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Error("Open returned another key than Create made")
			}
			exercise(t, opened)
		})
	}

	refusals := []struct {
		name, ref string
		kt        keyspec.Type
		usage     keyspec.Usage
		want      string
		is        error
	}{
		{"EC decryption key", "tpm2:handle=0x81000022", keyspec.ECP256, keyspec.Decrypt, "must be RSA", nil},
		{"handle in use", "tpm2:handle=0x81000020", keyspec.ECP256, keyspec.Sign, "0x81000020", tpm.ErrHandleInUse},
		{"file exists", "file://" + filepath.Join(dir, "iot.pem"), keyspec.ECP256, keyspec.Sign, "exists", nil},
		{"unknown type", "tpm2:handle=0x81000023", "rsa1024", keyspec.Sign, "rsa1024", nil},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			_, err := s.Create(tt.ref, tt.kt, tt.usage)
			if err == nil || !strings.Contains(err.Error(), tt.want) || tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Create(%s) = %v; want an error containing %q", tt.ref, err, tt.want)
			}
		})
	}
	if _, err := s.Open("tpm2:handle=0x81000099"); !errors.Is(err, tpm.ErrHandleAbsent) || !strings.Contains(err.Error(), "0x81000099") {
		t.Errorf("Open(absent handle) = %v; want ErrHandleAbsent naming the handle", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := s.Open("tpm2:handle=0x81000020"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Open after Close = %v; want a closed-store error", err)
	}
}

func TestStoreTPMUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tss2.pem")
	s := NewStore(StoreOptions{TPMDevice: "unix:///nonexistent/tpm.sock"})
	defer s.Close()
	_, err := s.Create("file://"+path, keyspec.ECP256, keyspec.Sign)
	if !errors.Is(err, tpm.ErrUnreachable) || !strings.Contains(err.Error(), "unix:///nonexistent/tpm.sock") {
		t.Errorf("Create with no TPM = %v; want ErrUnreachable naming the device", err)
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		t.Errorf("a failed Create left %s behind", path)
	}
}

// TestStoreFileOnlyTouchesNoHardware: a Store that only opens file keys
// never reaches for a TPM or a token.
func TestStoreFileOnlyTouchesNoHardware(t *testing.T) {
	key, _ := keyspec.RSA2048.Generate()
	data, _ := MarshalPEM(key)
	path := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(StoreOptions{TPMDevice: "unix:///nonexistent/tpm.sock", PKCS11: &config.PKCS11{P11Provider: "/nonexistent.so"}})
	defer s.Close()
	k, err := s.Open("file://" + path)
	if err != nil {
		t.Fatal(err)
	}
	if StoreOf(k) != keyspec.File || IsHardware(k) {
		t.Errorf("StoreOf = %q; want file", StoreOf(k))
	}
	if sign, decrypt := KeyUsage(k); !sign || !decrypt {
		t.Errorf("RSA file key: sign %v decrypt %v; want both", sign, decrypt)
	}
	if err := CheckKey("SecretsManager", k); err != nil {
		t.Errorf("RSA file key for SecretsManager: %v", err)
	}
}

func TestStoreToken(t *testing.T) {
	tok := testtool.NewSoftHSMToken(t, "keys-test", "1234")
	pinFile := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pinFile, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := NewStore(StoreOptions{PKCS11: &config.PKCS11{P11Provider: tok.Module, SlotLabel: tok.Label, SlotUserPin: "1234"}})
	defer s.Close()
	tests := []struct {
		name      string
		ref       string
		kt        keyspec.Type
		usage     keyspec.Usage
		principal string
	}{
		{"PIN from crypto.PKCS11", "pkcs11:object=iot;type=private", keyspec.ECP256, keyspec.Sign, "IoTCertificate"},
		{"PIN from pin-source", "pkcs11:object=server;type=private?pin-source=file://" + pinFile, keyspec.RSA2048, keyspec.Sign, "MQTTServerCertificate"},
		{"token and module in the URI", "pkcs11:object=secrets;token=keys-test;type=private?module-path=" + tok.Module, keyspec.RSA2048, keyspec.Decrypt, "SecretsManager"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := s.Create(tt.ref, tt.kt, tt.usage)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if StoreOf(k) != keyspec.PKCS11 {
				t.Errorf("StoreOf = %q; want pkcs11", StoreOf(k))
			}
			if err := CheckKey(tt.principal, k); err != nil {
				t.Errorf("CheckKey(%s): %v", tt.principal, err)
			}
			exercise(t, k)
			opened, err := s.Open(tt.ref)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			exercise(t, opened)
		})
	}
	if _, err := s.Create("pkcs11:object=iot;type=private", keyspec.ECP256, keyspec.Sign); !errors.Is(err, hsm.ErrObjectExists) {
		t.Errorf("Create over an existing label = %v; want ErrObjectExists", err)
	}
	if err := s.Destroy("pkcs11:object=iot;type=private"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := s.Open("pkcs11:object=iot;type=private"); !errors.Is(err, hsm.ErrObjectAbsent) {
		t.Errorf("Open after Destroy = %v; want ErrObjectAbsent", err)
	}
	// The token is logged in already; another PIN is still refused.
	if _, err := s.Open("pkcs11:object=server;type=private?pin-value=0000"); !errors.Is(err, hsm.ErrWrongPIN) || strings.Contains(err.Error(), "0000") {
		t.Errorf("Open with another PIN on a logged-in token = %v; want ErrWrongPIN without the PIN", err)
	}
	if _, err := s.Open("pkcs11:object=x;token=no-such-token;type=private"); !errors.Is(err, hsm.ErrTokenAbsent) {
		t.Errorf("Open on a missing token = %v; want ErrTokenAbsent", err)
	}
}

func TestResolvePIN(t *testing.T) {
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	os.WriteFile(pinFile, []byte("4321\r\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	tests := []struct {
		name     string
		attrs    map[string]string
		fallback string
		want     string
		err      string
	}{
		{"pin-value first", map[string]string{"pin-value": "1111"}, "2222", "1111", ""},
		{"pin-source file URI", map[string]string{"pin-source": "file://" + pinFile}, "2222", "4321", ""},
		{"pin-source path", map[string]string{"pin-source": pinFile}, "", "4321", ""},
		{"slotUserPin", map[string]string{}, "2222", "2222", ""},
		{"none", map[string]string{}, "", "", "no PIN"},
		{"relative pin-source", map[string]string{"pin-source": "pin.txt"}, "", "", "absolute"},
		{"missing pin file", map[string]string{"pin-source": "file:///nonexistent/pin"}, "", "", "no such file"},
		{"empty pin file", map[string]string{"pin-source": empty}, "", "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolvePIN(tt.attrs, tt.fallback)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("resolvePIN = %q, %v; want an error containing %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("resolvePIN = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
