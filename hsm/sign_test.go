//go:build cgo

package hsm

//lint:file-ignore SA1019 the tests wrap data keys with RSA PKCS #1 v1.5, as Greengrass v1 does, to check the token decrypts them.

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/keyspec"
)

func TestGenerateSignVerify(t *testing.T) {
	_, _, tok := openToken(t)
	d256, d384 := sha256.Sum256([]byte("message")), sha512.Sum384([]byte("message"))
	digests := []struct {
		h      crypto.Hash
		digest []byte
	}{{crypto.SHA256, d256[:]}, {crypto.SHA384, d384[:]}}
	tests := []struct {
		kt   keyspec.Type
		rsa  bool
		bits int
	}{
		{keyspec.RSA2048, true, 2048},
		{keyspec.RSA3072, true, 3072},
		{keyspec.ECP256, false, 256},
		{keyspec.ECP384, false, 384},
	}
	for _, tc := range tests {
		t.Run(string(tc.kt), func(t *testing.T) {
			k, err := tok.Generate("sign-"+string(tc.kt), nil, tc.kt, keyspec.Sign)
			if err != nil {
				t.Fatal(err)
			}
			if k.Usage() != keyspec.Sign {
				t.Errorf("Usage = %v, want Sign", k.Usage())
			}
			switch pub := k.Public().(type) {
			case *rsa.PublicKey:
				if !tc.rsa || pub.N.BitLen() != tc.bits || pub.E != 65537 {
					t.Errorf("RSA-%d e=%d, want %s with e=65537", pub.N.BitLen(), pub.E, tc.kt)
				}
			case *ecdsa.PublicKey:
				if tc.rsa || pub.Curve.Params().BitSize != tc.bits {
					t.Errorf("EC key on %s, want %s", pub.Curve.Params().Name, tc.kt)
				}
			default:
				t.Fatalf("Public() = %T", pub)
			}
			for _, d := range digests {
				sig, err := k.Sign(rand.Reader, d.digest, d.h)
				if err != nil {
					t.Fatalf("sign %v: %v", d.h, err)
				}
				if err := verify(k.Public(), d.h, d.digest, sig, false); err != nil {
					t.Errorf("%v: %v", d.h, err)
				}
				if !tc.rsa {
					continue
				}
				for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto, d.h.Size()} {
					sig, err := k.Sign(rand.Reader, d.digest, &rsa.PSSOptions{SaltLength: salt, Hash: d.h})
					if err != nil {
						t.Fatalf("sign PSS %v salt %d: %v", d.h, salt, err)
					}
					if err := verify(k.Public(), d.h, d.digest, sig, true); err != nil {
						t.Errorf("PSS %v salt %d: %v", d.h, salt, err)
					}
				}
			}
			if _, err := k.Sign(rand.Reader, d256[:], crypto.SHA384); err == nil || !strings.Contains(err.Error(), "digest of 32 bytes") {
				t.Errorf("a SHA-256 digest signed as SHA-384: %v; want a refusal", err)
			}
			if _, err := k.Sign(rand.Reader, d256[:], crypto.Hash(0)); err == nil || !strings.Contains(err.Error(), "unhashed") {
				t.Errorf("raw signature = %v; want a refusal", err)
			}
			if tc.rsa {
				if _, err := k.Sign(rand.Reader, d256[:], &rsa.PSSOptions{SaltLength: 20, Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "salt length 20") {
					t.Errorf("PSS with salt 20 = %v; want a refusal naming the salt length", err)
				}
			}
			if _, err := k.Decrypt(rand.Reader, []byte("x"), nil); err == nil || !strings.Contains(err.Error(), "may not decrypt") {
				t.Errorf("Decrypt with a signing key = %v; want a refusal", err)
			}
			// The same key found again by label and by ID.
			for _, c := range []struct {
				label string
				id    []byte
			}{{"sign-" + string(tc.kt), nil}, {"", k.id(t)}} {
				again, err := tok.Key(c.label, c.id)
				if err != nil {
					t.Fatalf("Key(%q, %x): %v", c.label, c.id, err)
				}
				if !again.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
					t.Errorf("Key(%q, %x) has another public key", c.label, c.id)
				}
			}
		})
	}
}

func TestDecrypt(t *testing.T) {
	_, _, tok := openToken(t)
	k, err := tok.Generate("secrets", []byte("sm"), keyspec.RSA2048, keyspec.Decrypt)
	if err != nil {
		t.Fatal(err)
	}
	if k.Usage() != keyspec.Decrypt {
		t.Errorf("Usage = %v, want Decrypt", k.Usage())
	}
	dataKey := []byte("0123456789abcdef0123456789abcdef")
	wrapped, err := rsa.EncryptPKCS1v15(rand.Reader, k.Public().(*rsa.PublicKey), dataKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range []crypto.DecrypterOpts{nil, &rsa.PKCS1v15DecryptOptions{}, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}} {
		got, err := k.Decrypt(rand.Reader, wrapped, opts)
		if err != nil || !bytes.Equal(got, dataKey) {
			t.Errorf("Decrypt(%#v) = %q, %v; want the data key", opts, got, err)
		}
	}
	// A wrong ciphertext: an error, or a random key with SessionKeyLen.
	bad := bytes.Clone(wrapped)
	bad[0] ^= 0xff
	if _, err := k.Decrypt(rand.Reader, bad, nil); err == nil {
		t.Error("a damaged ciphertext decrypted")
	}
	if got, err := k.Decrypt(rand.Reader, bad, &rsa.PKCS1v15DecryptOptions{SessionKeyLen: 32}); err != nil || len(got) != 32 || bytes.Equal(got, dataKey) {
		t.Errorf("damaged ciphertext with SessionKeyLen = %x, %v; want a random 32-byte key", got, err)
	}
	if _, err := k.Decrypt(rand.Reader, wrapped, &rsa.OAEPOptions{Hash: crypto.SHA256}); err == nil || !strings.Contains(err.Error(), "OAEP") {
		t.Errorf("OAEP = %v; want a refusal naming OAEP", err)
	}
	digest := sha256.Sum256(nil)
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err == nil || !strings.Contains(err.Error(), "may not sign") {
		t.Errorf("Sign with a decryption key = %v; want a refusal", err)
	}
	before := countObjects(t, tok)
	for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.ECP384} {
		if _, err := tok.Generate("ec-secrets", nil, kt, keyspec.Decrypt); err == nil || !strings.Contains(err.Error(), "must be RSA") {
			t.Errorf("%s decryption key = %v; want a refusal", kt, err)
		}
	}
	if _, err := tok.Generate("dsa", nil, keyspec.Type("dsa1024"), keyspec.Sign); err == nil || !strings.Contains(err.Error(), `"dsa1024"`) {
		t.Errorf("unknown key type = %v; want a refusal naming it", err)
	}
	if n := countObjects(t, tok); n != before {
		t.Errorf("refused Generate calls changed the token: %d objects, had %d", n, before)
	}
}

// signerOnly hides Key's Decrypt method, as core/keys does: in TLS 1.2,
// crypto/tls takes every crypto.Decrypter for an RSA key-exchange key and
// fails handshakes with an EC one ("unsupported decryption key type").
type signerOnly struct{ crypto.Signer }

// TestTLSHandshake: token keys serve TLS 1.2 and 1.3 handshakes, so their
// signatures are in the form crypto/tls expects (ECDSA in DER, RSA-PSS in
// TLS 1.3).
func TestTLSHandshake(t *testing.T) {
	_, _, tok := openToken(t)
	for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.ECP384, keyspec.RSA2048} {
		k, err := tok.Generate("tls-"+string(kt), nil, kt, keyspec.Sign)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
			DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
		if err != nil {
			t.Fatalf("%s: self-sign: %v", kt, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(string(kt)+"/"+tls.VersionName(version), func(t *testing.T) {
				c, s := net.Pipe()
				defer c.Close()
				defer s.Close()
				srv := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: signerOnly{k}}},
					MinVersion: version, MaxVersion: version})
				cli := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: version, MaxVersion: version})
				done := make(chan error, 1)
				go func() { done <- srv.Handshake() }()
				if err := cli.Handshake(); err != nil {
					t.Fatalf("client handshake: %v (server: %v)", err, <-done)
				}
				if err := <-done; err != nil {
					t.Fatalf("server handshake: %v", err)
				}
			})
		}
	}
}

func TestECDSADER(t *testing.T) {
	raw := append(bytes.Repeat([]byte{0}, 31), 1)
	raw = append(raw, append([]byte{0x80}, bytes.Repeat([]byte{0}, 31)...)...)
	der, err := ecdsaDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	var sig struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &sig); err != nil || len(rest) != 0 || sig.R.Int64() != 1 || sig.S.Cmp(new(big.Int).Lsh(big.NewInt(1), 255)) != 0 {
		t.Errorf("ecdsaDER = %x (%v): want SEQUENCE{1, 2^255}", der, err)
	}
	if _, err := ecdsaDER([]byte{1, 2, 3}); err == nil {
		t.Error("odd-length signature accepted")
	}
}

// benchSign compares signing with a SoftHSM key and with an in-memory
// key of the same type, one signer at a time and in parallel.
func benchSign(b *testing.B, kt keyspec.Type, memory crypto.Signer) {
	_, _, tok := openToken(b)
	k, err := tok.Generate("bench", nil, kt, keyspec.Sign)
	if err != nil {
		b.Fatal(err)
	}
	digest := sha256.Sum256([]byte("m"))
	for _, s := range []struct {
		name   string
		signer crypto.Signer
	}{{"softhsm", k}, {"memory", memory}} {
		b.Run(s.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkSignECP256(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, keyspec.ECP256, key)
}

func BenchmarkSignRSA2048(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, keyspec.RSA2048, key)
}
