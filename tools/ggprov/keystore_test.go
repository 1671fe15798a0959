package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/hsm"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// createdKey is what keys create printed: the public key and, for a
// signing key, a CSR whose signature proves the TPM or token holds the
// private key.
type createdKey struct {
	pub crypto.PublicKey
	csr *x509.CertificateRequest
}

func parseCreated(t *testing.T, stdout string) createdKey {
	t.Helper()
	var k createdKey
	for rest := []byte(stdout); ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatalf("PUBLIC KEY: %v", err)
			}
			k.pub = pub
		case "CERTIFICATE REQUEST":
			csr, err := x509.ParseCertificateRequest(block.Bytes)
			if err != nil {
				t.Fatalf("CSR: %v", err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("CSR signature: %v", err)
			}
			k.csr = csr
		default:
			t.Errorf("unexpected PEM block %q in the output", block.Type)
		}
	}
	if k.pub == nil {
		t.Fatalf("no PUBLIC KEY in the output:\n%s", stdout)
	}
	if k.csr != nil && !k.pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.csr.PublicKey) {
		t.Error("the CSR is for another key than the PUBLIC KEY printed")
	}
	return k
}

func TestKeysCreateInTPM(t *testing.T) {
	sw := testtool.StartSWTPM(t, "tcp")
	dir := t.TempDir()
	file := filepath.Join(dir, "server.tss2.pem")
	tests := []struct {
		name  string
		args  []string
		code  int
		want  string // in stderr
		csr   bool
		check func(t *testing.T)
	}{
		{name: "persistent handle", args: []string{"--uri", "tpm2:handle=0x81000010", "--type", "ecp256", "--subject", "core"}, csr: true},
		{name: "handle in use", args: []string{"--uri", "tpm2:handle=0x81000010", "--type", "ecp256"}, code: 1, want: "0x81000010"},
		{name: "TSS2 file", args: []string{"--uri", "file://" + file, "--type", "rsa2048"}, csr: true, check: func(t *testing.T) {
			info, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			if info.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %o, want 600", file, info.Mode().Perm())
			}
			data, _ := os.ReadFile(file)
			if block, _ := pem.Decode(data); block == nil || block.Type != "TSS2 PRIVATE KEY" {
				t.Errorf("%s is not a TSS2 PRIVATE KEY file:\n%s", file, data)
			}
		}},
		{name: "file exists", args: []string{"--uri", "file://" + file, "--type", "rsa2048"}, code: 1, want: "exists"},
		{name: "decryption key", args: []string{"--uri", "tpm2:handle=0x81000011", "--type", "rsa2048", "--usage", "decrypt"}},
		{name: "EC decryption key", args: []string{"--uri", "tpm2:handle=0x81000012", "--type", "ecp256", "--usage", "decrypt"}, code: 1, want: "must be RSA"},
		{name: "not a persistent handle", args: []string{"--uri", "tpm2:handle=0x01000010", "--type", "ecp256"}, code: 2, want: "not a persistent handle"},
		{name: "unknown type", args: []string{"--uri", "tpm2:handle=0x81000013", "--type", "rsa1024"}, code: 2, want: "--type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"keys", "create", "--tpm-device", sw.Device}, tt.args...)
			code, stdout, stderr := ggprov(args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if code != 0 {
				return
			}
			k := parseCreated(t, stdout)
			if (k.csr != nil) != tt.csr {
				t.Errorf("CSR printed: %v, want %v", k.csr != nil, tt.csr)
			}
			if tt.check != nil {
				tt.check(t)
			}
		})
	}
	// The persistent key is there for ggcore: a Store opens it by handle.
	s := keys.NewStore(keys.StoreOptions{TPMDevice: sw.Device})
	defer s.Close()
	k, err := s.Open("tpm2:handle=0x81000010")
	if err != nil {
		t.Fatalf("open the created key: %v", err)
	}
	if err := keys.CheckKey("MQTTServerCertificate", k); err != nil {
		t.Error(err)
	}
}

func TestKeysCreateInToken(t *testing.T) {
	tok := testtool.NewSoftHSMToken(t, "ggprov-test", "1234")
	pin := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pin, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongPIN := filepath.Join(t.TempDir(), "wrong-pin")
	if err := os.WriteFile(wrongPIN, []byte("9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	token := []string{"--pkcs11-module", tok.Module, "--pkcs11-token", tok.Label}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"EC key", []string{"--uri", "pkcs11:object=core-iot;type=private", "--type", "ecp256", "--pkcs11-pin-source", "file://" + pin}, 0, ""},
		{"label exists", []string{"--uri", "pkcs11:object=core-iot;type=private", "--type", "ecp256", "--pkcs11-pin-source", "file://" + pin}, 1, "already exists"},
		{"RSA decryption key", []string{"--uri", "pkcs11:object=core-secrets;type=private", "--type", "rsa2048", "--usage", "decrypt", "--pkcs11-pin-source", "file://" + pin}, 0, ""},
		{"wrong PIN", []string{"--uri", "pkcs11:object=other;type=private", "--type", "ecp256", "--pkcs11-pin-source", "file://" + wrongPIN}, 1, "wrong PIN"},
		{"no PIN", []string{"--uri", "pkcs11:object=other;type=private", "--type", "ecp256"}, 2, "--pkcs11-pin-source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"keys", "create"}, token...), tt.args...)
			code, stdout, stderr := ggprov(args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d and %q", code, stderr, tt.code, tt.want)
			}
			if strings.Contains(stderr, "9999") || strings.Contains(stderr, "1234") {
				t.Errorf("stderr shows a PIN: %s", stderr)
			}
			if code == 0 {
				parseCreated(t, stdout)
			}
		})
	}
}

// TestInitInTPM: --key-store tpm puts the core's three keys in the TPM
// as TSS2 files and config.json names the TPM. The old word "tpm2" still
// works, with one warning line.
func TestInitInTPM(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")
	const warning = "--key-store tpm2 is now spelled tpm"
	for _, word := range []string{"tpm", "tpm2"} {
		t.Run(word, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			code, _, stderr := ggprov("init", "--dir", dir, "--core", "core", "--device", "dev1",
				"--key-store", word, "--tpm-device", sw.Device)
			if code != 0 {
				t.Fatalf("ggprov init --key-store %s: exit %d: %s", word, code, stderr)
			}
			warned := 0
			for _, line := range strings.Split(stderr, "\n") {
				if strings.Contains(line, warning) {
					warned++
				}
			}
			if want := map[string]int{"tpm": 0, "tpm2": 1}[word]; warned != want {
				t.Errorf("stderr has %d lines %q, want %d:\n%s", warned, warning, want, stderr)
			}
			cfg, err := config.LoadConfig(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.GGCore.TPM.Device != sw.Device || cfg.Crypto.PKCS11 != nil {
				t.Errorf("ggcore.tpm.device = %q, crypto.PKCS11 = %v; want %q and none", cfg.GGCore.TPM.Device, cfg.Crypto.PKCS11, sw.Device)
			}
			s := keys.NewStore(keys.StoreOptions{TPMDevice: cfg.GGCore.TPM.Device})
			defer s.Close()
			p := cfg.Crypto.Principals
			for _, k := range []struct{ principal, ref string }{
				{"IoTCertificate", p.IoTCertificate.PrivateKey},
				{"MQTTServerCertificate", p.MQTTServerCertificate.PrivateKey},
				{"SecretsManager", p.SecretsManager.PrivateKey},
			} {
				key, err := s.Open(k.ref)
				if err == nil {
					err = keys.CheckKey(k.principal, key)
				}
				if err != nil {
					t.Errorf("%s: %v", k.principal, err)
					continue
				}
				if got := keys.StoreOf(key); got != keyspec.TPM {
					t.Errorf("%s: %s is a %s key, want tpm", k.principal, k.ref, got)
				}
				if ec, ok := key.Public().(*ecdsa.PublicKey); k.principal == "MQTTServerCertificate" && (!ok || ec.Curve != elliptic.P256()) {
					t.Errorf("MQTT server key in the TPM is %s, want EC P-256 (the TPM default)", keys.Describe(key.Public()))
				}
			}
		})
	}
}

// TestInitInToken: init puts the core's three keys in the token and
// config.json names them; when init fails half-way (a label already
// taken), the keys it made are destroyed and no bundle is written.
func TestInitInToken(t *testing.T) {
	tok := testtool.NewSoftHSMToken(t, "ggprov-init", "1234")
	pin := filepath.Join(t.TempDir(), "pin")
	if err := os.WriteFile(pin, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	store := []string{"--key-store", "pkcs11", "--pkcs11-module", tok.Module, "--pkcs11-token", tok.Label,
		"--pkcs11-pin-source", "file://" + pin}
	dir := mustInit(t, store...)
	cfg, err := config.LoadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Crypto.PKCS11 == nil || cfg.Crypto.PKCS11.P11Provider != tok.Module || cfg.Crypto.PKCS11.SlotLabel != tok.Label {
		t.Errorf("crypto.PKCS11 = %v; want the module and token", cfg.Crypto.PKCS11)
	}
	s := keys.NewStore(keys.StoreOptions{PKCS11: cfg.Crypto.PKCS11})
	p := cfg.Crypto.Principals
	for _, k := range []struct{ principal, ref string }{
		{"IoTCertificate", p.IoTCertificate.PrivateKey},
		{"MQTTServerCertificate", p.MQTTServerCertificate.PrivateKey},
		{"SecretsManager", p.SecretsManager.PrivateKey},
	} {
		if !strings.HasPrefix(k.ref, "pkcs11:") {
			t.Errorf("%s: %s is not a token key", k.principal, k.ref)
			continue
		}
		key, err := s.Open(k.ref)
		if err == nil {
			err = keys.CheckKey(k.principal, key)
		}
		if err != nil {
			t.Errorf("%s: %v", k.principal, err)
		}
	}
	s.Close()

	// A second core on the same token whose secrets label is taken: init
	// fails at its third key and takes back the first two.
	s = keys.NewStore(keys.StoreOptions{PKCS11: cfg.Crypto.PKCS11})
	defer s.Close()
	ref := func(label string) string {
		return "pkcs11:object=" + label + ";type=private?pin-source=file://" + pin
	}
	if _, err := s.Create(ref("second-secrets"), keyspec.RSA2048, keyspec.Decrypt); err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	args := append([]string{"init", "--dir", filepath.Join(parent, "bundle"), "--core", "second", "--device", "d"}, store...)
	code, _, stderr := ggprov(args...)
	if code != 1 || !strings.Contains(stderr, "second-secrets") {
		t.Fatalf("exit %d, stderr %q; want exit 1 naming second-secrets", code, stderr)
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 0 {
		t.Errorf("left %d entries behind", len(entries))
	}
	for _, label := range []string{"second-iot", "second-mqtt-server"} {
		if _, err := s.Open(ref(label)); !errors.Is(err, hsm.ErrObjectAbsent) {
			t.Errorf("%s after the failed init: %v; want it destroyed", label, err)
		}
	}
}
