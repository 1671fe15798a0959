// Package release reads, verifies and writes ggcore release files: the
// signed unit of an over-the-air image update (docs/design.md "Releases").
//
// A release is one file, the same on the wire and in a slot:
//
//	magic "GGREL\x00\x01\n" (8 bytes)
//	uint32 big-endian manifest length M (1..65536)
//	M bytes manifest (strict JSON, see Manifest)
//	uint16 big-endian signature length S (1..512)
//	S bytes signature over "ggcore release manifest v1\n" || manifest
//	the parts (kernel, initramfs, optional dtb) in manifest order, back to back
//
// The signature is ECDSA P-256 with SHA-256 (ASN.1 DER) or Ed25519,
// chosen by the signing key. ReadHeader verifies everything before the
// payload; PartReader hashes the payload while it is streamed.
package release

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"
)

// Limits of the format.
const (
	// Magic opens every release file.
	Magic = "GGREL\x00\x01\n"
	// SignatureContext is prepended to the manifest bytes before signing.
	SignatureContext = "ggcore release manifest v1\n"
	// FormatVersion is the only manifest "format" understood.
	FormatVersion = 1
	// MaxManifestSize bounds the manifest length M.
	MaxManifestSize = 65536
	// MaxSignatureSize bounds the signature length S.
	MaxSignatureSize = 512
	// MaxPartSize bounds each part's size.
	MaxPartSize = 256 << 20
	// MaxVersionLen bounds the version text.
	MaxVersionLen = 64
	// MaxSecurityVersion bounds the security version.
	MaxSecurityVersion = 65535
)

// Part names.
const (
	PartKernel    = "kernel"
	PartInitramfs = "initramfs"
	PartDTB       = "dtb"
)

// Errors of this package. Every error returned wraps one of them (test
// with errors.Is); their texts are the reasons the core reports to
// ggcloud as deployment status.
var (
	ErrBadSignature = errors.New("bad signature")
	ErrUnknownKey   = errors.New("unknown signing key")
	ErrMalformed    = errors.New("malformed release")
	ErrIncompatible = errors.New("incompatible release")
	ErrDowngrade    = errors.New("downgrade")
	ErrHashMismatch = errors.New("hash mismatch")
	ErrNoSpace      = errors.New("no space")
)

// Compatible names the systems a release runs on.
type Compatible struct {
	Arch   string `json:"arch"`   // amd64, arm64
	Board  string `json:"board"`  // qemu-virt, qemu-q35, rpi4, ...
	Flavor string `json:"flavor"` // tpm, pkcs11, debug
}

// Part is one payload part as the manifest describes it.
type Part struct {
	Name   string `json:"name"`   // kernel, initramfs or dtb
	Size   int64  `json:"size"`   // bytes, 1..MaxPartSize
	SHA256 string `json:"sha256"` // 64 lowercase hex digits
}

// Manifest is the signed description of a release.
type Manifest struct {
	Format          int        `json:"format"`
	Compatible      Compatible `json:"compatible"`
	Version         string     `json:"version"`
	SecurityVersion uint32     `json:"securityVersion"`
	Created         time.Time  `json:"created"`
	Parts           []Part     `json:"parts"`
	KeyID           string     `json:"keyId"`
}

// Header is a release's verified header: everything before the payload.
type Header struct {
	Manifest  Manifest
	Raw       []byte // the manifest bytes as signed
	Signature []byte
	Size      int64 // bytes of the header in the file; the payload starts here
}

// PayloadSize is the sum of the part sizes.
func (h *Header) PayloadSize() int64 {
	var n int64
	for _, p := range h.Manifest.Parts {
		n += p.Size
	}
	return n
}

// Digest is SHA-256 of the manifest bytes: what ggboot extends PCR 13 with.
func (h *Header) Digest() [32]byte { return sha256.Sum256(h.Raw) }

// ExpectedPCR13 is PCR 13 of a SHA-256 bank after ggboot measured this
// release into a freshly reset PCR: SHA-256(32 zero bytes || Digest()).
func (h *Header) ExpectedPCR13() [32]byte {
	d := h.Digest()
	var buf [64]byte
	copy(buf[32:], d[:])
	return sha256.Sum256(buf[:])
}

// Check reports whether the release is for the system want describes
// (ErrIncompatible, whose text names what differs: "wrong arch", "wrong
// board" or "wrong flavor") and not below minSecurityVersion
// (ErrDowngrade). Every field of want must equal the manifest's.
func (h *Header) Check(want Compatible, minSecurityVersion uint32) error {
	c := h.Manifest.Compatible
	for _, f := range []struct{ what, got, want string }{
		{"arch", c.Arch, want.Arch},
		{"board", c.Board, want.Board},
		{"flavor", c.Flavor, want.Flavor},
	} {
		if f.got != f.want {
			return &incompatibleError{what: f.what, release: f.got, system: f.want}
		}
	}
	if sv := h.Manifest.SecurityVersion; sv < minSecurityVersion {
		return fmt.Errorf("%w: release %s has security version %d, this system accepts %d or later",
			ErrDowngrade, h.Manifest.Version, sv, minSecurityVersion)
	}
	return nil
}

// incompatibleError is ErrIncompatible with what differs.
type incompatibleError struct{ what, release, system string }

func (e *incompatibleError) Error() string {
	return fmt.Sprintf("wrong %s: the release is for %s %q, this system is %q", e.what, e.what, e.release, e.system)
}

func (e *incompatibleError) Unwrap() error { return ErrIncompatible }
