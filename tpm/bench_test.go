package tpm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// The TPM benchmarks sign through swtpm over its Unix socket; the
// Software ones sign with in-memory keys, the baseline that ggcore
// gives up for keys that cannot be copied.

func benchSign(b *testing.B, s crypto.Signer, opts crypto.SignerOpts) {
	d := digestOf(opts.HashFunc(), "benchmark")
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Sign(rand.Reader, d, opts); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTPMKey(b *testing.B, kt keyspec.Type) *Key {
	tp, _ := openSW(b, "unix")
	_, k := createLoad(b, tp, kt, keyspec.Sign)
	return k
}

func BenchmarkSignECP256(b *testing.B) {
	benchSign(b, benchTPMKey(b, keyspec.ECP256), crypto.SHA256)
}

func BenchmarkSignRSA2048(b *testing.B) {
	benchSign(b, benchTPMKey(b, keyspec.RSA2048), &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
}

func BenchmarkSignSoftwareECP256(b *testing.B) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, k, crypto.SHA256)
}

func BenchmarkSignSoftwareRSA2048(b *testing.B) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	benchSign(b, k, &rsa.PSSOptions{Hash: crypto.SHA256, SaltLength: rsa.PSSSaltLengthEqualsHash})
}
