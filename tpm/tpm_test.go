package tpm

//lint:file-ignore SA1019 the tests wrap secrets with RSA PKCS #1 v1.5, as Greengrass v1 does, to check the TPM key decrypts them.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// openSW starts a fresh swtpm and opens it; both end with the test.
func openSW(t testing.TB, transport string) (*TPM, *testtool.SWTPM) {
	t.Helper()
	sw := testtool.StartSWTPM(t, transport)
	tp, err := Open(sw.Device)
	if err != nil {
		t.Fatalf("Open(%s): %v", sw.Device, err)
	}
	t.Cleanup(func() { tp.Close() })
	return tp, sw
}

// createLoad creates a key of type kt and loads it.
func createLoad(t testing.TB, tp *TPM, kt keyspec.Type, u keyspec.Usage) (*Blob, *Key) {
	t.Helper()
	b, err := tp.Create(kt, u)
	if err != nil {
		t.Fatalf("Create(%s, %s): %v", kt, u, err)
	}
	k, err := tp.Load(b)
	if err != nil {
		t.Fatalf("Load(%s, %s): %v", kt, u, err)
	}
	return b, k
}

func digestOf(h crypto.Hash, msg string) []byte {
	d := h.New()
	d.Write([]byte(msg))
	return d.Sum(nil)
}

// verify checks sig over digest with the standard library.
func verify(pub crypto.PublicKey, h crypto.Hash, digest, sig []byte, opts crypto.SignerOpts) error {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return errors.New("ECDSA signature does not verify")
		}
		return nil
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			return rsa.VerifyPSS(pub, h, digest, sig, pss)
		}
		return rsa.VerifyPKCS1v15(pub, h, digest, sig)
	}
	return fmt.Errorf("unexpected public key %T", pub)
}

func TestOpen(t *testing.T) {
	for _, transport := range []string{"unix", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			sw := testtool.StartSWTPM(t, transport)
			tp, err := Open(sw.Device)
			if err != nil {
				t.Fatalf("Open(%s): %v", sw.Device, err)
			}
			_, k := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
			d := digestOf(crypto.SHA256, "hello")
			sig, err := k.Sign(nil, d, crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(k.Public(), crypto.SHA256, d, sig, crypto.SHA256); err != nil {
				t.Fatal(err)
			}
			if err := tp.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := tp.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := k.Sign(nil, d, crypto.SHA256); err == nil || !strings.Contains(err.Error(), "closed") {
				t.Fatalf("Sign after Close: got %v, want a 'closed' error", err)
			}
			if _, err := tp.Create(keyspec.ECP256, keyspec.Sign); err == nil {
				t.Fatal("Create after Close succeeded")
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	port := testtool.FreePort(t)
	for _, dev := range []string{
		"unix:///nonexistent-dir/tpm.sock",
		fmt.Sprintf("tcp://127.0.0.1:%d", port),
		"/dev/tpm-ggcore-missing",
	} {
		t.Run(dev, func(t *testing.T) {
			tp, err := Open(dev)
			if err == nil {
				tp.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrUnreachable) {
				t.Errorf("error %v does not wrap ErrUnreachable", err)
			}
			if want := "tpm: open " + dev + ": "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
	t.Run("not a device", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "plain-file")
		os.WriteFile(f, nil, 0o600)
		_, err := Open(f)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), f) {
			t.Errorf("Open(plain file) = %v, want ErrUnreachable naming the file", err)
		}
	})
	for _, dev := range []string{"tpm0", "unix://relative/tpm.sock", "tcp://no-port"} {
		t.Run("syntax "+dev, func(t *testing.T) {
			_, err := Open(dev)
			if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), dev) {
				t.Errorf("Open(%q) = %v, want a syntax error naming the device", dev, err)
			}
		})
	}
}

// TestOpenBusy: swtpm serves one client at a time; a second Open while
// the first TPM is open is reported, not left hanging.
func TestOpenBusy(t *testing.T) {
	_, sw := openSW(t, "unix")
	tp, err := open(sw.Device, 300*time.Millisecond)
	if err == nil {
		tp.Close()
		t.Fatal("second Open of a busy swtpm succeeded")
	}
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "is another process connected?") {
		t.Fatalf("second Open = %v, want ErrUnreachable explaining the busy socket", err)
	}
}

func TestSRKCreatedOnceAndReused(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")
	srk := func() []byte {
		t.Helper()
		tp, err := Open(sw.Device)
		if err != nil {
			t.Fatal(err)
		}
		defer tp.Close()
		if tp.srkPub.Type != tpm2.TPMAlgECC {
			t.Errorf("SRK type 0x%x, want ECC", tp.srkPub.Type)
		}
		a := tp.srkPub.ObjectAttributes
		if !a.Restricted || !a.Decrypt || a.SignEncrypt || !a.FixedTPM || !a.NoDA {
			t.Errorf("SRK attributes %+v, want a restricted noDA decryption key", a)
		}
		return tpm2.Marshal(tp.srkPub)
	}
	first := srk()
	second := srk()
	if !bytes.Equal(first, second) {
		t.Error("SRK differs on the second Open: it was created again")
	}
}

func TestSignVerify(t *testing.T) {
	tp, _ := openSW(t, "unix")
	pss := func(h crypto.Hash, salt int) *rsa.PSSOptions { return &rsa.PSSOptions{Hash: h, SaltLength: salt} }
	rsaOpts := []crypto.SignerOpts{
		crypto.SHA256, crypto.SHA384, crypto.SHA512,
		pss(crypto.SHA256, rsa.PSSSaltLengthEqualsHash),
		pss(crypto.SHA384, rsa.PSSSaltLengthEqualsHash),
		pss(crypto.SHA256, rsa.PSSSaltLengthAuto),
		pss(crypto.SHA256, 32),
	}
	ecOpts := []crypto.SignerOpts{crypto.SHA256, crypto.SHA384}
	for _, tc := range []struct {
		kt   keyspec.Type
		opts []crypto.SignerOpts
	}{
		{keyspec.RSA2048, rsaOpts},
		{keyspec.RSA3072, rsaOpts},
		{keyspec.ECP256, ecOpts},
		{keyspec.ECP384, ecOpts},
	} {
		t.Run(string(tc.kt), func(t *testing.T) {
			_, k := createLoad(t, tp, tc.kt, keyspec.Sign)
			if k.Usage() != keyspec.Sign {
				t.Errorf("Usage() = %v, want sign", k.Usage())
			}
			for _, o := range tc.opts {
				name := o.HashFunc().String()
				if p, ok := o.(*rsa.PSSOptions); ok {
					name = fmt.Sprintf("PSS-%v-salt%d", p.Hash, p.SaltLength)
				}
				t.Run(name, func(t *testing.T) {
					h := o.HashFunc()
					d := digestOf(h, "message for "+name)
					sig, err := k.Sign(rand.Reader, d, o)
					if err != nil {
						t.Fatal(err)
					}
					verifyOpts := o
					if p, ok := o.(*rsa.PSSOptions); ok && p.SaltLength == rsa.PSSSaltLengthAuto {
						// TLS 1.3 verifies with salt = hash length.
						verifyOpts = pss(h, rsa.PSSSaltLengthEqualsHash)
					}
					if err := verify(k.Public(), h, d, sig, verifyOpts); err != nil {
						t.Fatalf("signature does not verify: %v", err)
					}
					d[0] ^= 1
					if verify(k.Public(), h, d, sig, verifyOpts) == nil {
						t.Fatal("signature verifies over another digest")
					}
				})
			}
		})
	}
}

func TestSignRefusals(t *testing.T) {
	tp, _ := openSW(t, "unix")
	_, rk := createLoad(t, tp, keyspec.RSA2048, keyspec.Sign)
	_, ek := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	d256 := digestOf(crypto.SHA256, "x")
	for _, tc := range []struct {
		name   string
		k      *Key
		digest []byte
		opts   crypto.SignerOpts
		want   string
	}{
		{"short digest", rk, d256[:20], crypto.SHA256, "digest is 20 bytes, want 32"},
		{"digest for other hash", ek, d256, crypto.SHA384, "digest is 32 bytes, want 48"},
		{"SHA-1", rk, d256[:20], crypto.SHA1, "hash SHA-1 is not supported"},
		{"no hash", ek, d256, crypto.Hash(0), "is not supported"},
		{"nil opts", ek, d256, nil, "no signer options"},
		{"PSS salt 20", rk, d256, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: 20}, "salt length 20 is not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.k.Sign(nil, tc.digest, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Sign = %v, want an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "tpm: sign with key 0x8") {
				t.Errorf("error %q does not name the key", err)
			}
		})
	}
}

func TestDecrypt(t *testing.T) {
	tp, _ := openSW(t, "unix")
	_, k := createLoad(t, tp, keyspec.RSA2048, keyspec.Decrypt)
	if k.Usage() != keyspec.Decrypt {
		t.Fatalf("Usage() = %v, want decrypt", k.Usage())
	}
	pub := k.Public().(*rsa.PublicKey)
	for _, msg := range [][]byte{
		[]byte("a 32-byte data key for secrets!!"),
		{0},
		bytes.Repeat([]byte{0xA5}, pub.Size()-11),
	} {
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, pub, msg)
		if err != nil {
			t.Fatal(err)
		}
		for _, opts := range []crypto.DecrypterOpts{nil, &rsa.PKCS1v15DecryptOptions{}} {
			got, err := k.Decrypt(nil, ct, opts)
			if err != nil {
				t.Fatalf("Decrypt(%d-byte message, %T): %v", len(msg), opts, err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("Decrypt = %x, want %x", got, msg)
			}
		}
	}

	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, []byte("0123456789abcdef"))
	t.Run("session key length", func(t *testing.T) {
		got, err := k.Decrypt(nil, ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16})
		if err != nil || string(got) != "0123456789abcdef" {
			t.Fatalf("Decrypt = %q, %v", got, err)
		}
		// Wrong length or bad padding: a random key, no error (as crypto/rsa).
		got, err = k.Decrypt(nil, ct, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32})
		if err != nil || len(got) != 32 {
			t.Fatalf("Decrypt with another session key length = %d bytes, %v; want 32 random bytes", len(got), err)
		}
		bad := bytes.Clone(ct)
		bad[len(bad)-1] ^= 1
		got, err = k.Decrypt(nil, bad, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 16})
		if err != nil || len(got) != 16 {
			t.Fatalf("Decrypt of corrupt ciphertext with session key length = %d bytes, %v", len(got), err)
		}
	})
	t.Run("corrupt ciphertext", func(t *testing.T) {
		bad := bytes.Clone(ct)
		bad[len(bad)-1] ^= 1
		if got, err := k.Decrypt(nil, bad, nil); err == nil {
			t.Fatalf("Decrypt of a corrupt ciphertext = %x, want an error", got)
		}
	})
	t.Run("OAEP refused", func(t *testing.T) {
		_, err := k.Decrypt(nil, ct, &rsa.OAEPOptions{Hash: crypto.SHA256})
		if err == nil || !strings.Contains(err.Error(), "OAEP is not supported") {
			t.Fatalf("Decrypt(OAEP) = %v", err)
		}
	})
	t.Run("wrong length", func(t *testing.T) {
		_, err := k.Decrypt(nil, ct[1:], nil)
		if err == nil || !strings.Contains(err.Error(), "ciphertext is 255 bytes, want 256") {
			t.Fatalf("Decrypt(short) = %v", err)
		}
	})
}

func TestUsageSeparation(t *testing.T) {
	tp, _ := openSW(t, "unix")
	t.Run("EC decrypt key refused", func(t *testing.T) {
		for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.ECP384} {
			_, err := tp.Create(kt, keyspec.Decrypt)
			if err == nil || !strings.Contains(err.Error(), "decryption key must be RSA") {
				t.Errorf("Create(%s, Decrypt) = %v, want a clear refusal", kt, err)
			}
		}
	})
	t.Run("unknown type", func(t *testing.T) {
		_, err := tp.Create("rsa1024", keyspec.Sign)
		if err == nil || !strings.Contains(err.Error(), `unknown key type "rsa1024"`) {
			t.Errorf("Create(rsa1024) = %v", err)
		}
	})
	_, sk := createLoad(t, tp, keyspec.RSA2048, keyspec.Sign)
	_, dk := createLoad(t, tp, keyspec.RSA2048, keyspec.Decrypt)
	ct, _ := rsa.EncryptPKCS1v15(rand.Reader, sk.Public().(*rsa.PublicKey), []byte("secret"))
	if _, err := sk.Decrypt(nil, ct, nil); err == nil || !strings.Contains(err.Error(), "it is a signing key") {
		t.Errorf("Decrypt with a sign key = %v, want a refusal", err)
	}
	if _, err := dk.Sign(nil, digestOf(crypto.SHA256, "x"), crypto.SHA256); err == nil || !strings.Contains(err.Error(), "it is a decryption key") {
		t.Errorf("Sign with a decrypt key = %v, want a refusal", err)
	}
	// The TPM itself enforces the split: the attributes say so.
	for _, tc := range []struct {
		k             *Key
		sign, decrypt bool
		usage         keyspec.Usage
	}{{sk, true, false, keyspec.Sign}, {dk, false, true, keyspec.Decrypt}} {
		pub := readPublic(t, tp, tc.k)
		a := pub.ObjectAttributes
		if a.SignEncrypt != tc.sign || a.Decrypt != tc.decrypt {
			t.Errorf("%v key: sign=%v decrypt=%v", tc.usage, a.SignEncrypt, a.Decrypt)
		}
	}
}

// readPublic reads k's public area from the TPM.
func readPublic(t testing.TB, tp *TPM, k *Key) *tpm2.TPMTPublic {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	h, err := tp.use(k)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(tp.tr)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func TestPEMRoundTrip(t *testing.T) {
	tp, _ := openSW(t, "unix")
	b, k := createLoad(t, tp, keyspec.ECP256, keyspec.Sign)
	data := b.MarshalPEM()
	if !bytes.HasPrefix(data, []byte("-----BEGIN TSS2 PRIVATE KEY-----\n")) {
		t.Fatalf("PEM starts %q", data[:40])
	}
	got, err := ParsePEM(data)
	if err != nil {
		t.Fatalf("ParsePEM(MarshalPEM()): %v", err)
	}
	if got.Parent != SRKHandle || !bytes.Equal(got.Public, b.Public) || !bytes.Equal(got.Private, b.Private) {
		t.Fatalf("round trip changed the blob: %+v", got)
	}
	// Loading the same blob again returns the key already loaded.
	k2, err := tp.Load(got)
	if err != nil {
		t.Fatal(err)
	}
	if k2 != k {
		t.Error("Load of the same blob loaded it a second time")
	}
}
