package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/ota/release"
)

// releaseInputs writes a kernel, initramfs and dtb and returns the sign
// flags naming them (without --key and --out).
func releaseInputs(t *testing.T, dir string) []string {
	t.Helper()
	files := map[string]string{"kernel": "bzImage", "initramfs": "initramfs.cpio.gz", "dtb": "virt.dtb"}
	var args []string
	for part, name := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, bytes.Repeat([]byte(part), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--"+part, path)
	}
	return append(args, "--arch", "arm64", "--board", "qemu-virt", "--flavor", "tpm", "--version", "1.4.0", "--security-version", "3")
}

func mustGGProv(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := ggprov(args...)
	if code != 0 {
		t.Fatalf("ggprov %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// checkRelease reads a release file as install does, trusting pub.
func checkRelease(t *testing.T, path, pub string) *release.Header {
	t.Helper()
	v, err := release.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := release.ReadHeader(f, v)
	if err != nil {
		t.Fatalf("the signed release is refused: %v", err)
	}
	if err := h.Check(release.Compatible{Arch: "arm64", Board: "qemu-virt", Flavor: "tpm"}, 3); err != nil {
		t.Fatal(err)
	}
	if err := h.VerifyPayload(f); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestReleaseKeygenSignShow(t *testing.T) {
	for _, typ := range []string{"ecdsa", "ed25519"} {
		t.Run(typ, func(t *testing.T) {
			dir := t.TempDir()
			key, pub, rel := filepath.Join(dir, "release-key.pem"), filepath.Join(dir, "release.pub"), filepath.Join(dir, "r.ggrel")
			out := mustGGProv(t, "release", "keygen", "--out", key, "--pub", pub, "--type", typ)
			if !strings.HasPrefix(out, "release key ") || !strings.Contains(out, key) {
				t.Errorf("keygen printed %q", out)
			}
			if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("key file: %v, mode %v; want 0600", err, fi.Mode())
			}
			if code, _, stderr := ggprov("release", "keygen", "--out", key); code != 1 || !strings.Contains(stderr, key+" exists") {
				t.Errorf("keygen over an existing key: exit %d, %q; want it refused", code, stderr)
			}

			out = mustGGProv(t, append(append([]string{"release", "sign"}, releaseInputs(t, dir)...), "--key", key, "--out", rel)...)
			h := checkRelease(t, rel, pub)
			data, _ := os.ReadFile(rel)
			fileSum := sha256hex(data)
			for _, w := range []string{rel + ": release 1.4.0", "security version 3", "arm64/qemu-virt/tpm", "kernel 6000", "initramfs 9000", "dtb 3000", "key " + h.Manifest.KeyID, "sha256 " + fileSum} {
				if !strings.Contains(out, w) {
					t.Errorf("sign summary %q lacks %q", out, w)
				}
			}

			out = mustGGProv(t, "release", "show", rel, "--pub", pub)
			pcr := h.ExpectedPCR13()
			for _, w := range []string{"version:          1.4.0", "signature:        good", "every hash matches", "expected PCR 13:  " + hex.EncodeToString(pcr[:]), "file sha256:      " + fileSum} {
				if !strings.Contains(out, w) {
					t.Errorf("show lacks %q:\n%s", w, out)
				}
			}
			if out := mustGGProv(t, "release", "show", rel); !strings.Contains(out, "NOT CHECKED") {
				t.Errorf("show without --pub does not say the signature is unchecked:\n%s", out)
			}
			if out := mustGGProv(t, "release", "show", "--json", rel); strings.TrimSpace(out) != string(h.Raw) {
				t.Errorf("show --json = %q, want the manifest %q", out, h.Raw)
			}
			if out := mustGGProv(t, "release", "pcr", rel); out != hex.EncodeToString(pcr[:])+"\n" {
				t.Errorf("pcr printed %q", out)
			}
		})
	}
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestReleaseRefusals(t *testing.T) {
	dir := t.TempDir()
	key, pub, otherKey, otherPub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub"), filepath.Join(dir, "o.pem"), filepath.Join(dir, "o.pub")
	mustGGProv(t, "release", "keygen", "--out", key, "--pub", pub)
	mustGGProv(t, "release", "keygen", "--out", otherKey, "--pub", otherPub, "--type", "ed25519")
	inputs := releaseInputs(t, dir)
	rel := filepath.Join(dir, "r.ggrel")
	mustGGProv(t, append(append([]string{"release", "sign"}, inputs...), "--key", key, "--out", rel)...)
	data, _ := os.ReadFile(rel)
	tampered := filepath.Join(dir, "tampered.ggrel")
	data[len(data)-10] ^= 1
	if err := os.WriteFile(tampered, data, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope")
	signArgs := func(extra ...string) []string {
		return append(append([]string{"release", "sign"}, inputs...), extra...)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"show with another key", []string{"release", "show", rel, "--pub", otherPub}, 1, rel + ": unknown signing key"},
		{"show tampered", []string{"release", "show", tampered, "--pub", pub}, 1, tampered + ": hash mismatch: part dtb"},
		{"show not a release", []string{"release", "show", pub}, 1, pub + ": malformed release: not a ggcore release"},
		{"show missing file", []string{"release", "show", missing}, 1, missing},
		{"show with a private key as --pub", []string{"release", "show", rel, "--pub", key}, 1, key + `: PEM block "PRIVATE KEY": want PUBLIC KEY`},
		{"pcr of a missing file", []string{"release", "pcr", missing}, 1, missing},
		{"sign without flags", []string{"release", "sign"}, 2, "--kernel is required"},
		{"sign without security version", []string{"release", "sign", "--kernel", "k"}, 2, `--security-version "": want a number 0..65535`},
		{"sign with security version 65536", append(signArgs("--key", key, "--out", filepath.Join(dir, "x")), "--security-version", "65536"), 2, `--security-version "65536"`},
		{"sign with a missing kernel", append(signArgs("--key", key, "--out", filepath.Join(dir, "x")), "--kernel", missing), 1, "--kernel: open " + missing},
		{"sign with a public key", signArgs("--key", pub, "--out", filepath.Join(dir, "x")), 1, "--key " + pub + `: PEM block "PUBLIC KEY"`},
		{"sign with a long version", append(signArgs("--key", key, "--out", filepath.Join(dir, "x")), "--version", strings.Repeat("v", 65)), 1, "want 1..64 printable"},
		{"sign with a pkcs11 key and no module", signArgs("--key", "pkcs11:token=t;object=o;type=private?pin-value=1", "--out", filepath.Join(dir, "x")), 2, "no PKCS#11 module"},
		{"keygen without --out", []string{"release", "keygen"}, 2, "--out is required"},
		{"keygen of an unknown type", []string{"release", "keygen", "--out", filepath.Join(dir, "y"), "--type", "rsa"}, 2, `--type "rsa"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := ggprov(tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a failed sign left its --out file")
	}
}

// TestReleaseSignInToken: a release key made in a PKCS#11 token signs a
// release that its public key verifies.
func TestReleaseSignInToken(t *testing.T) {
	tok := testtool.NewSoftHSMToken(t, "ggprov-release", "4321")
	dir := t.TempDir()
	pin := filepath.Join(dir, "pin")
	if err := os.WriteFile(pin, []byte("4321\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustGGProv(t, "keys", "create", "--uri", "pkcs11:object=release-key;type=private", "--type", "ecp256",
		"--pkcs11-module", tok.Module, "--pkcs11-token", tok.Label, "--pkcs11-pin-source", "file://"+pin)
	block, _ := pem.Decode([]byte(out))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("keys create printed no public key:\n%s", out)
	}
	pub := filepath.Join(dir, "release.pub")
	if err := os.WriteFile(pub, pem.EncodeToMemory(block), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(dir, "r.ggrel")
	uri := "pkcs11:token=" + tok.Label + ";object=release-key;type=private?pin-source=file://" + pin
	for _, args := range [][]string{
		{"--key", uri, "--pkcs11-module", tok.Module},
		{"--key", uri + "&module-path=" + tok.Module},
	} {
		out = mustGGProv(t, append(append(append([]string{"release", "sign"}, releaseInputs(t, dir)...), "--out", rel), args...)...)
		h := checkRelease(t, rel, pub)
		if !strings.Contains(out, "key "+h.Manifest.KeyID) {
			t.Errorf("summary %q does not name key %s", out, h.Manifest.KeyID)
		}
	}
	code, _, stderr := ggprov(append(append([]string{"release", "sign"}, releaseInputs(t, dir)...), "--out", rel, "--pkcs11-module", tok.Module,
		"--key", "pkcs11:token="+tok.Label+";object=no-such-key;type=private?pin-source=file://"+pin)...)
	if code != 1 || !strings.Contains(stderr, "no-such-key") {
		t.Errorf("sign with a missing token key: exit %d, %q", code, stderr)
	}
}
