package keys

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// TestOpenFileURIForms opens one key through the file URI spellings a
// config.json may hold: plain, percent-escaped, and with host localhost.
func TestOpenFileURIForms(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "my keys 100%")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	data, err := MarshalPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "core.key.pem"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	escaped := strings.ReplaceAll(strings.ReplaceAll(dir, "%", "%25"), " ", "%20") + "/core.key.pem"
	for _, ref := range []string{
		"file://" + escaped,
		"file://localhost" + escaped,
	} {
		got, err := Open(ref)
		if err != nil {
			t.Errorf("Open(%q): %v", ref, err)
			continue
		}
		if !got.Public().(*ecdsa.PublicKey).Equal(key.Public()) {
			t.Errorf("Open(%q) returned another key", ref)
		}
	}
	for _, ref := range []string{
		"file://relative/core.key.pem", // host "relative"
		"core.key.pem",
		"",
	} {
		if _, err := Open(ref); err == nil {
			t.Errorf("Open(%q) accepted", ref)
		}
	}
}

// TestOpenNeedsStoreForHardware: the plain-file Open recognises every TPM
// and PKCS#11 spelling and says a key store is needed.
func TestOpenNeedsStoreForHardware(t *testing.T) {
	for _, ref := range []string{
		"tpm2:handle=0x81000002",
		"handle:0x81000002",
		"pkcs11:object=core;type=private",
		"pkcs11:object=core;type=private;token=gg",
	} {
		if _, err := Open(ref); !errors.Is(err, ErrHardwareKey) {
			t.Errorf("Open(%q) = %v, want ErrHardwareKey", ref, err)
		}
	}
	tss2 := filepath.Join(t.TempDir(), "tpm.key.pem")
	if err := os.WriteFile(tss2, []byte("-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n-----END TSS2 PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("file://" + tss2); !errors.Is(err, ErrHardwareKey) || !strings.Contains(err.Error(), tss2) {
		t.Errorf("TSS2 PEM: %v, want ErrHardwareKey naming the file", err)
	}
}

func TestCheckPrincipalNamesThePrincipal(t *testing.T) {
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := keyspec.ECP384.Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		principal string
		pub       any
		want      string
	}{
		{"IoTCertificate", &weak.PublicKey, "IoTCertificate: RSA-1024 key: RSA keys must be at least 2048 bits"},
		{"MQTTServerCertificate", &weak.PublicKey, "MQTTServerCertificate: RSA-1024 key"},
		{"SecretsManager", &weak.PublicKey, "SecretsManager: RSA-1024 key"},
		{"SecretsManager", p384.Public(), "EC P-384 key given, SecretsManager requires RSA >= 2048"},
	}
	for _, tt := range tests {
		err := CheckPrincipal(tt.principal, tt.pub)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckPrincipal(%s) = %v, want %q", tt.principal, err, tt.want)
		}
		if !errors.Is(err, ErrUnsupportedKey) {
			t.Errorf("CheckPrincipal(%s) = %v, not ErrUnsupportedKey", tt.principal, err)
		}
	}
	if err := CheckPrincipal("MQTTServerCertificate", p384.Public()); err != nil {
		t.Errorf("MQTTServerCertificate with P-384: %v", err)
	}
}
