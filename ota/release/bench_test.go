package release

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"testing"
)

// BenchmarkReadHeader measures reading and verifying a release header:
// the signature check that install and ggboot do before any payload.
func BenchmarkReadHeader(b *testing.B) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"ecdsa-p256", ecKey(b)}, {"ed25519", edKey(b)}} {
		b.Run(tc.name, func(b *testing.B) {
			rel := build(b, tc.key, 1, payload{kernel: []byte("k"), initramfs: []byte("i")})
			v := verifier(b, tc.key)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ReadHeader(bytes.NewReader(rel), v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParts measures streaming and hashing the payload through a
// PartReader (MiB/s is the figure for the issue report).
func BenchmarkParts(b *testing.B) {
	key := edKey(b)
	p := payload{kernel: make([]byte, 16<<20), initramfs: make([]byte, 16<<20)}
	rand.Read(p.kernel)
	rand.Read(p.initramfs)
	rel := build(b, key, 1, p)
	h, err := ReadHeader(bytes.NewReader(rel), verifier(b, key))
	if err != nil {
		b.Fatal(err)
	}
	payload := rel[h.Size:]
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		if err := h.VerifyPayload(bytes.NewReader(payload)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(payload))*float64(b.N)/b.Elapsed().Seconds()/(1<<20), "MiB/s")
}
