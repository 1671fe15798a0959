package keys

//lint:file-ignore SA1019 the decryption key is checked the way ggcore uses it: RSA PKCS #1 v1.5, with which Greengrass v1 wraps secrets.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// needOpenSSL returns the openssl binary (see testtool.Require).
func needOpenSSL(t *testing.T) string { return testtool.Require(t, "openssl") }

// opensslKey runs openssl with args (OUT is replaced by a fresh file in dir)
// and returns that file's path.
func opensslKey(t *testing.T, openssl, dir, name string, args ...string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	for i, a := range args {
		if a == "OUT" {
			args[i] = out
		}
	}
	cmd := exec.Command(openssl, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// TestOpenKeysMadeByOpenSSL opens the key files operators make with the
// usual openssl commands, through a file:// reference as config.json
// names them, and checks what is accepted can sign and what is refused is
// refused for the reason the key's owner needs to read.
func TestOpenKeysMadeByOpenSSL(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // "" = accepted; otherwise a substring of the error
		is   error
	}{
		{"PKCS#1 RSA-2048 (genrsa -traditional)", []string{"genrsa", "-traditional", "-out", "OUT", "2048"}, "", nil},
		{"PKCS#8 RSA-3072 (genpkey)", []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:3072", "-out", "OUT"}, "", nil},
		{"SEC1 P-256 (ecparam -noout)", []string{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "OUT"}, "", nil},
		{"PKCS#8 P-384 (genpkey)", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384", "-out", "OUT"}, "", nil},
		{"RSA-1024", []string{"genrsa", "-traditional", "-out", "OUT", "1024"}, "RSA-1024 key: RSA keys must be at least 2048 bits", ErrUnsupportedKey},
		{"SEC1 P-256 after EC PARAMETERS (ecparam -genkey)", []string{"ecparam", "-name", "prime256v1", "-genkey", "-out", "OUT"}, "", nil},
		{"secp256k1", []string{"ecparam", "-name", "secp256k1", "-genkey", "-noout", "-out", "OUT"}, "EC key on secp256k1: want P-256 or P-384", ErrUnsupportedKey},
		{"brainpoolP384r1 PKCS#8", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:brainpoolP384r1", "-out", "OUT"}, "EC key on brainpoolP384r1: want P-256 or P-384", ErrUnsupportedKey},
		{"explicit curve parameters", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:explicit", "-out", "OUT"}, "EC key with explicit curve parameters", ErrUnsupportedKey},
		{"Ed448", []string{"genpkey", "-algorithm", "ed448", "-out", "OUT"}, "Ed448 key: want RSA >= 2048 or EC P-256/P-384", ErrUnsupportedKey},
		{"X25519", []string{"genpkey", "-algorithm", "x25519", "-out", "OUT"}, "X25519 key: want RSA >= 2048 or EC P-256/P-384", ErrUnsupportedKey},
		{"RSA-PSS", []string{"genpkey", "-algorithm", "RSA-PSS", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "OUT"}, "RSA-PSS key: want RSA >= 2048 or EC P-256/P-384", ErrUnsupportedKey},
		{"P-521", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521", "-out", "OUT"}, "P-521", ErrUnsupportedKey},
		{"Ed25519", []string{"genpkey", "-algorithm", "ed25519", "-out", "OUT"}, "Ed25519", ErrUnsupportedKey},
		{"encrypted PKCS#8", []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes256", "-pass", "pass:secret", "-out", "OUT"}, "encrypted PEM", ErrUnsupportedKey},
		{"encrypted PKCS#1", []string{"genrsa", "-traditional", "-aes256", "-passout", "pass:secret", "-out", "OUT", "2048"}, "encrypted PEM", ErrUnsupportedKey},
	}
	// DSA takes two steps: parameters, then a PKCS#8 key (openssl 3's form).
	dsaParams := opensslKey(t, openssl, dir, "dsa-params.pem", "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "pbits:2048", "-out", "OUT")
	tests = append(tests, struct {
		name string
		args []string
		want string
		is   error
	}{"DSA PKCS#8", []string{"genpkey", "-paramfile", dsaParams, "-out", "OUT"}, "DSA key: want RSA >= 2048 or EC P-256/P-384", ErrUnsupportedKey})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := opensslKey(t, openssl, dir, strings.Repeat("k", i+1)+".pem", tt.args...)
			key, err := Open("file://" + path)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Open = %v, want an error containing %q", err, tt.want)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				if !errors.Is(err, tt.is) {
					t.Errorf("error %v is not %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if err := CheckPrincipal("IoTCertificate", key.Public()); err != nil {
				t.Errorf("CheckPrincipal: %v", err)
			}
			digest := sha256.Sum256([]byte("ggcore"))
			sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig)
			case *ecdsa.PublicKey:
				if !ecdsa.VerifyASN1(pub, digest[:], sig) {
					err = errors.New("ECDSA signature does not verify")
				}
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
}

// TestRSADecryptsWhatOpenSSLEncrypts is the SecretsManager path: v1 wraps
// the secrets' data key with RSA PKCS#1 v1.5 to the principal's key.
func TestRSADecryptsWhatOpenSSLEncrypts(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
	keyPath := opensslKey(t, openssl, dir, "secrets.pem", "genrsa", "-traditional", "-out", "OUT", "2048")
	plain := filepath.Join(dir, "datakey")
	want := []byte("0123456789abcdef0123456789abcdef")
	if err := os.WriteFile(plain, want, 0o600); err != nil {
		t.Fatal(err)
	}
	wrapped := filepath.Join(dir, "datakey.enc")
	if b, err := exec.Command(openssl, "pkeyutl", "-encrypt", "-inkey", keyPath,
		"-pkeyopt", "rsa_padding_mode:pkcs1", "-in", plain, "-out", wrapped).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkeyutl: %v\n%s", err, b)
	}
	ciphertext, err := os.ReadFile(wrapped)
	if err != nil {
		t.Fatal(err)
	}
	key, err := Open("file://" + keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrincipal("SecretsManager", key.Public()); err != nil {
		t.Fatalf("CheckPrincipal: %v", err)
	}
	dec, ok := key.(crypto.Decrypter)
	if !ok {
		t.Fatalf("RSA key %T is not a crypto.Decrypter", key)
	}
	got, err := dec.Decrypt(rand.Reader, ciphertext, &rsa.PKCS1v15DecryptOptions{})
	if err != nil {
		t.Fatalf("Decrypt: %v", err)
	}
	if string(got) != string(want) {
		t.Fatalf("Decrypt = %q, want %q", got, want)
	}
}

// TestMarshalPEMIsReadByOpenSSL: keys ggprov writes must load in
// openssl-based tools (mosquitto, curl, the AWS SDKs).
func TestMarshalPEMIsReadByOpenSSL(t *testing.T) {
	openssl := needOpenSSL(t)
	dir := t.TempDir()
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
			if !strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----\n") {
				t.Errorf("MarshalPEM does not write PKCS#8: %.40q", data)
			}
			path := filepath.Join(dir, string(typ)+".pem")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(openssl, "pkey", "-in", path, "-check", "-noout").CombinedOutput(); err != nil {
				t.Fatalf("openssl pkey -check: %v\n%s", err, b)
			}
		})
	}
}
