package release

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ReadHeader reads and verifies magic, sizes, manifest syntax and the
// signature — nothing of the payload. It reads exactly h.Size bytes of r,
// so r is then positioned at the first part. The signature must verify
// with a key of v, and the manifest's keyId must name that key.
//
// The signature is checked before the manifest is parsed strictly, so a
// changed manifest byte is ErrBadSignature; a signature by a key v does
// not hold is ErrUnknownKey.
func ReadHeader(r io.Reader, v *Verifier) (*Header, error) {
	h, err := readRaw(r)
	if err != nil {
		return nil, err
	}
	id, err := v.verify(h.Raw, h.Signature)
	if err != nil {
		return nil, err
	}
	if err := parseManifest(h.Raw, &h.Manifest); err != nil {
		return nil, err
	}
	if h.Manifest.KeyID != id {
		return nil, fmt.Errorf("%w: manifest names key %s but is signed by key %s", ErrMalformed, h.Manifest.KeyID, id)
	}
	return h, nil
}

// ReadUnverifiedHeader is ReadHeader without the signature check, for
// inspecting a release whose key is not at hand (ggprov release show).
// Never act on its result.
func ReadUnverifiedHeader(r io.Reader) (*Header, error) {
	h, err := readRaw(r)
	if err != nil {
		return nil, err
	}
	if err := parseManifest(h.Raw, &h.Manifest); err != nil {
		return nil, err
	}
	return h, nil
}

// readRaw reads the header's fields, checking magic and sizes, without
// reading a byte past the signature.
func readRaw(r io.Reader) (*Header, error) {
	var fixed [len(Magic) + 4]byte
	if err := readFull(r, fixed[:], "magic and manifest length"); err != nil {
		return nil, err
	}
	if string(fixed[:len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: not a ggcore release (magic %q, want %q)", ErrMalformed, fixed[:len(Magic)], Magic)
	}
	m := binary.BigEndian.Uint32(fixed[len(Magic):])
	if m < 1 || m > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest length %d outside 1..%d", ErrMalformed, m, MaxManifestSize)
	}
	raw := make([]byte, m)
	if err := readFull(r, raw, "manifest"); err != nil {
		return nil, err
	}
	var sl [2]byte
	if err := readFull(r, sl[:], "signature length"); err != nil {
		return nil, err
	}
	s := binary.BigEndian.Uint16(sl[:])
	if s == 0 {
		return nil, fmt.Errorf("%w: the release is unsigned (signature length 0)", ErrBadSignature)
	}
	if s > MaxSignatureSize {
		return nil, fmt.Errorf("%w: signature length %d outside 1..%d", ErrMalformed, s, MaxSignatureSize)
	}
	sig := make([]byte, s)
	if err := readFull(r, sig, "signature"); err != nil {
		return nil, err
	}
	return &Header{Raw: raw, Signature: sig, Size: int64(len(fixed)) + int64(m) + 2 + int64(s)}, nil
}

// readFull is io.ReadFull that calls a short read a truncated release.
func readFull(r io.Reader, buf []byte, what string) error {
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: truncated in the %s: %w", ErrMalformed, what, io.ErrUnexpectedEOF)
		}
		return fmt.Errorf("release: read %s: %w", what, err)
	}
	return nil
}

// manifestKeys are the manifest's JSON member names, spelled exactly;
// encoding/json matches names case-insensitively, the format does not.
var manifestKeys = map[string]bool{
	"format": true, "compatible": true, "arch": true, "board": true, "flavor": true,
	"version": true, "securityVersion": true, "created": true, "parts": true,
	"name": true, "size": true, "sha256": true, "keyId": true,
}

// parseManifest decodes raw strictly into m and validates it: valid UTF-8,
// one JSON object and nothing after it, no unknown, duplicate or
// differently cased member names, and every field within its bounds.
func parseManifest(raw []byte, m *Manifest) error {
	if !utf8.Valid(raw) {
		return fmt.Errorf("%w: manifest is not valid UTF-8", ErrMalformed)
	}
	if err := checkNames(raw); err != nil {
		return fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var got Manifest
	if err := dec.Decode(&got); err != nil {
		return fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: manifest: data after the JSON object", ErrMalformed)
	}
	if err := got.validate(); err != nil {
		return fmt.Errorf("%w: manifest: %w", ErrMalformed, err)
	}
	*m = got
	return nil
}

// checkNames walks raw's JSON tokens and refuses an object member name
// that is not one of manifestKeys or repeats in its object, and a top
// level that is not an object.
func checkNames(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	return walkObject(dec)
}

// walkObject checks the members of an object whose '{' was just read.
func walkObject(dec *json.Decoder) error {
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := tok.(string)
		switch {
		case !manifestKeys[name]:
			return fmt.Errorf("unknown field %q", name)
		case seen[name]:
			return fmt.Errorf("duplicate field %q", name)
		}
		seen[name] = true
		if err := walkValue(dec); err != nil {
			return err
		}
	}
	_, err := dec.Token() // '}'
	return err
}

// walkValue checks one value, descending into objects and arrays.
func walkValue(dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec)
	case json.Delim('['):
		for dec.More() {
			if err := walkValue(dec); err != nil {
				return err
			}
		}
		_, err := dec.Token() // ']'
		return err
	}
	return nil
}

// validate checks the manifest's fields against the format's bounds.
func (m *Manifest) validate() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("format %d, want %d", m.Format, FormatVersion)
	}
	for _, f := range []struct{ name, v string }{
		{"compatible.arch", m.Compatible.Arch},
		{"compatible.board", m.Compatible.Board},
		{"compatible.flavor", m.Compatible.Flavor},
	} {
		if !isToken(f.v) {
			return fmt.Errorf("%s %q: want 1..64 of A-Z a-z 0-9 . _ + -", f.name, f.v)
		}
	}
	if !isPrintable(m.Version) {
		return fmt.Errorf("version %q: want 1..%d printable ASCII characters", m.Version, MaxVersionLen)
	}
	if m.SecurityVersion > MaxSecurityVersion {
		return fmt.Errorf("securityVersion %d above %d", m.SecurityVersion, MaxSecurityVersion)
	}
	if m.Created.IsZero() {
		return errors.New("created is missing")
	}
	if !isLowerHex(m.KeyID, 16) {
		return fmt.Errorf("keyId %q: want 16 lowercase hex digits", m.KeyID)
	}
	seen := make(map[string]bool)
	for i, p := range m.Parts {
		switch p.Name {
		case PartKernel, PartInitramfs, PartDTB:
		default:
			return fmt.Errorf("part %d: name %q: want kernel, initramfs or dtb", i, p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("part %d: %s appears twice", i, p.Name)
		}
		seen[p.Name] = true
		if p.Size < 1 || p.Size > MaxPartSize {
			return fmt.Errorf("part %s: size %d outside 1..%d", p.Name, p.Size, MaxPartSize)
		}
		if !isLowerHex(p.SHA256, 64) {
			return fmt.Errorf("part %s: sha256 %q: want 64 lowercase hex digits", p.Name, p.SHA256)
		}
	}
	for _, name := range []string{PartKernel, PartInitramfs} {
		if !seen[name] {
			return fmt.Errorf("no %s part", name)
		}
	}
	return nil
}

func isToken(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '+' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

func isPrintable(s string) bool {
	if len(s) < 1 || len(s) > MaxVersionLen {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
