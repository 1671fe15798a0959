package tpm

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// opensslTPM runs openssl with the tpm2 provider against sw. swtpm
// serves one client at a time: no TPM value may be open on it.
func opensslTPM(t testing.TB, sw *testtool.SWTPM, args ...string) []byte {
	t.Helper()
	openssl := testtool.Require(t, "openssl")
	cmd := exec.Command(openssl, args...)
	cmd.Env = append(os.Environ(), "TPM2OPENSSL_TCTI=swtpm:path="+strings.TrimPrefix(sw.Device, "unix://"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func parsePub(t testing.TB, pemData []byte) crypto.PublicKey {
	t.Helper()
	blk, _ := pem.Decode(pemData)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		t.Fatalf("openssl printed %q, want a PUBLIC KEY", pemData)
	}
	pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// TestOpenSSLPublicKeyMatches: a key made by Create and written with
// MarshalPEM is read by the openssl tpm2 provider (which loads it into
// the TPM), and openssl's public key is Key.Public().
func TestOpenSSLPublicKeyMatches(t *testing.T) {
	testtool.Require(t, "openssl")
	for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.ECP384, keyspec.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			sw := testtool.StartSWTPM(t, "unix")
			tp, err := Open(sw.Device)
			if err != nil {
				t.Fatal(err)
			}
			b, k := createLoad(t, tp, kt, keyspec.Sign)
			want := k.Public()
			if err := tp.Close(); err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(file, b.MarshalPEM(), 0o600); err != nil {
				t.Fatal(err)
			}
			got := parsePub(t, opensslTPM(t, sw, "pkey", "-provider", "tpm2", "-provider", "default", "-in", file, "-pubout"))
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
				t.Fatal("openssl's public key differs from Key.Public()")
			}
		})
	}
}

// TestOpenSSLKeysLoad: keys that the openssl tpm2 provider generated
// load and sign here, under the SRK or under the default parent
// 0x40000001.
func TestOpenSSLKeysLoad(t *testing.T) {
	testtool.Require(t, "openssl")
	for _, tc := range []struct {
		name       string
		genArgs    []string
		otherSRK   bool // the SRK was made from another template
		wantParent uint32
	}{
		{"EC default parent", []string{"-algorithm", "EC", "-pkeyopt", "group:P-256"}, false, 0x40000001},
		{"EC parent SRK", []string{"-algorithm", "EC", "-pkeyopt", "group:P-384", "-pkeyopt", "parent:0x81000001"}, false, SRKHandle},
		{"RSA default parent", []string{"-algorithm", "RSA", "-pkeyopt", "bits:2048"}, false, 0x40000001},
		{"EC default parent and SRK from another template", []string{"-algorithm", "EC", "-pkeyopt", "group:P-256"}, true, 0x40000001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := testtool.StartSWTPM(t, "unix")
			if tc.otherSRK {
				persistSRK(t, sw.Device, tpm2.ECCSRKTemplate) // unique: 32 zero bytes per coordinate
			}
			tp, err := Open(sw.Device) // creates the SRK if absent
			if err != nil {
				t.Fatal(err)
			}
			tp.Close()
			file := filepath.Join(t.TempDir(), "key.pem")
			opensslTPM(t, sw, append(append([]string{"genpkey", "-provider", "tpm2", "-provider", "default"}, tc.genArgs...), "-out", file)...)
			want := parsePub(t, opensslTPM(t, sw, "pkey", "-provider", "tpm2", "-provider", "default", "-in", file, "-pubout"))
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}

			b, err := ParsePEM(data)
			if err != nil {
				t.Fatalf("ParsePEM(openssl's key): %v", err)
			}
			if b.Parent != tc.wantParent {
				t.Errorf("parent 0x%08x, want 0x%08x", b.Parent, tc.wantParent)
			}
			tp, err = Open(sw.Device)
			if err != nil {
				t.Fatal(err)
			}
			defer tp.Close()
			k, err := tp.Load(b)
			if err != nil {
				t.Fatalf("Load(openssl's key): %v", err)
			}
			if !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
				t.Fatal("Key.Public() differs from openssl's public key")
			}
			signVerify(t, k, crypto.SHA256)
			// Swapped out and back in, the key still works.
			createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
			createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
			signVerify(t, k, crypto.SHA256)
		})
	}
}

// persistSRK puts a primary made from tmpl at SRKHandle, as another
// provisioning tool might have.
func persistSRK(t testing.TB, device string, tmpl tpm2.TPMTPublic) {
	t.Helper()
	tr := rawConn(t, device)
	defer tr.Close()
	owner := tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)}
	rsp, err := tpm2.CreatePrimary{PrimaryHandle: owner, InPublic: tpm2.New2B(tmpl)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: rsp.ObjectHandle}.Execute(tr)
	_, err = tpm2.EvictControl{
		Auth:             owner,
		ObjectHandle:     tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name},
		PersistentHandle: tpm2.TPMHandle(SRKHandle),
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
}
