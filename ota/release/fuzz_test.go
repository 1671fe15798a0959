package release

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReadHeader feeds arbitrary bytes to ReadHeader and
// ReadUnverifiedHeader (which reaches the strict manifest parser with
// any manifest): they must not panic, must fail with one of the package's
// errors, and whatever they accept must be within the format's bounds.
func FuzzReadHeader(f *testing.F) {
	ec, ed := ecKey(f), edKey(f)
	v := verifier(f, ec, ed)
	for _, rel := range [][]byte{build(f, ec, 3, testPayload()), build(f, ed, 0, payload{kernel: []byte("k"), initramfs: []byte("i")})} {
		h, err := ReadHeader(bytes.NewReader(rel), v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rel[:h.Size])
		f.Add(rel[:h.Size/2])
		f.Add(rawHeader(h.Raw, nil))
		f.Add(rawHeader([]byte(`{"format":1,"format":1}`), []byte{1}))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, read := range []func(io.Reader) (*Header, error){
			func(r io.Reader) (*Header, error) { return ReadHeader(r, v) },
			ReadUnverifiedHeader,
		} {
			r := bytes.NewReader(data)
			h, err := read(r)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUnknownKey) {
					t.Fatalf("error of no release kind: %v", err)
				}
				continue
			}
			if consumed := int64(len(data) - r.Len()); consumed != h.Size {
				t.Fatalf("read %d bytes, header size %d", consumed, h.Size)
			}
			if err := h.Manifest.validate(); err != nil {
				t.Fatalf("accepted an invalid manifest: %v", err)
			}
			if n := h.PayloadSize(); n < 2 || n > 3*MaxPartSize {
				t.Fatalf("payload size %d", n)
			}
			_ = h.Check(board, 1)
			_ = h.VerifyPayload(r)
		}
	})
}
