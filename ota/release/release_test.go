package release

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var board = Compatible{Arch: "arm64", Board: "qemu-virt", Flavor: "tpm"}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func verifier(t testing.TB, keys ...crypto.Signer) *Verifier {
	t.Helper()
	var pubs []crypto.PublicKey
	for _, k := range keys {
		pubs = append(pubs, k.Public())
	}
	v, err := NewVerifier(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// payload is a test release's parts.
type payload struct{ kernel, initramfs, dtb []byte }

func testPayload() payload {
	return payload{
		kernel:    bytes.Repeat([]byte("K"), 5000),
		initramfs: bytes.Repeat([]byte("I"), 7000),
		dtb:       []byte("dtb!"),
	}
}

func (p payload) readers() map[string]io.Reader {
	m := map[string]io.Reader{PartKernel: bytes.NewReader(p.kernel), PartInitramfs: bytes.NewReader(p.initramfs)}
	if p.dtb != nil {
		m[PartDTB] = bytes.NewReader(p.dtb)
	}
	return m
}

// build makes a release signed by key, with security version sv.
func build(t testing.TB, key crypto.Signer, sv uint32, p payload) []byte {
	t.Helper()
	var out bytes.Buffer
	m := Manifest{Compatible: board, Version: "1.2.0", SecurityVersion: sv}
	if err := Build(&out, m, p.readers(), key); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// header returns the header bytes of raw manifest signed by key (nil key:
// no signature).
func header(t testing.TB, manifest []byte, key crypto.Signer) []byte {
	t.Helper()
	var sig []byte
	if key != nil {
		var err error
		if sig, err = Sign(manifest, key); err != nil {
			t.Fatal(err)
		}
	}
	return rawHeader(manifest, sig)
}

func rawHeader(manifest, sig []byte) []byte {
	var b bytes.Buffer
	b.WriteString(Magic)
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(manifest))))
	b.Write(manifest)
	b.Write(binary.BigEndian.AppendUint16(nil, uint16(len(sig))))
	b.Write(sig)
	return b.Bytes()
}

// readAll reads a release the way install and ggboot do: header, check,
// every part.
func readAll(rel []byte, v *Verifier, want Compatible, minSV uint32) (*Header, map[string][]byte, error) {
	r := bytes.NewReader(rel)
	h, err := ReadHeader(r, v)
	if err != nil {
		return nil, nil, err
	}
	if err := h.Check(want, minSV); err != nil {
		return h, nil, err
	}
	got := make(map[string][]byte)
	pr := h.Parts(r)
	for {
		p, pr, err := pr.Next()
		if err == io.EOF {
			return h, got, nil
		}
		if err != nil {
			return h, got, err
		}
		data, err := io.ReadAll(pr)
		got[p.Name] = data
		if err != nil {
			return h, got, fmt.Errorf("part %s: %w", p.Name, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		p    payload
	}{
		{"ecdsa-p256", ecKey(t), testPayload()},
		{"ed25519", edKey(t), testPayload()},
		{"no dtb", ecKey(t), payload{kernel: []byte("k"), initramfs: []byte("i")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rel := build(t, tc.key, 7, tc.p)
			h, got, err := readAll(rel, verifier(t, tc.key), board, 7)
			if err != nil {
				t.Fatalf("a freshly built release is refused: %v", err)
			}
			if !bytes.Equal(got[PartKernel], tc.p.kernel) || !bytes.Equal(got[PartInitramfs], tc.p.initramfs) || !bytes.Equal(got[PartDTB], tc.p.dtb) {
				t.Error("the parts read back differ from those built")
			}
			m := h.Manifest
			id, _ := KeyID(tc.key.Public())
			if m.Format != 1 || m.Version != "1.2.0" || m.SecurityVersion != 7 || m.Compatible != board || m.KeyID != id || m.Created.IsZero() {
				t.Errorf("manifest = %+v", m)
			}
			payload := int64(len(tc.p.kernel) + len(tc.p.initramfs) + len(tc.p.dtb))
			if h.PayloadSize() != payload || h.Size+payload != int64(len(rel)) {
				t.Errorf("header %d + payload %d bytes, release is %d", h.Size, h.PayloadSize(), len(rel))
			}
			if h.Digest() != sha256.Sum256(h.Raw) || !bytes.Equal(rel[12:12+len(h.Raw)], h.Raw) {
				t.Error("Digest is not SHA-256 of the manifest bytes in the file")
			}
			d := h.Digest()
			pcr := sha256.Sum256(append(make([]byte, 32), d[:]...))
			if h.ExpectedPCR13() != pcr {
				t.Error("ExpectedPCR13 is not SHA-256(zeros || digest)")
			}
			if err := h.VerifyPayload(bytes.NewReader(rel[h.Size:])); err != nil {
				t.Errorf("VerifyPayload: %v", err)
			}
		})
	}
}

func TestBuildFromFiles(t *testing.T) {
	key := edKey(t)
	dir := t.TempDir()
	p := testPayload()
	files := map[string]io.Reader{}
	for name, data := range map[string][]byte{PartKernel: p.kernel, PartInitramfs: p.initramfs} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[name] = f
	}
	var out bytes.Buffer
	if err := Build(&out, Manifest{Compatible: board, Version: "v", SecurityVersion: 1}, files, key); err != nil {
		t.Fatal(err)
	}
	_, got, err := readAll(out.Bytes(), verifier(t, key), board, 0)
	if err != nil || !bytes.Equal(got[PartKernel], p.kernel) || !bytes.Equal(got[PartInitramfs], p.initramfs) {
		t.Fatalf("release built from files: err %v", err)
	}
}

func TestRefusals(t *testing.T) {
	key, other := ecKey(t), edKey(t)
	v := verifier(t, key)
	p := testPayload()
	good := build(t, key, 5, p)
	h, err := ReadHeader(bytes.NewReader(good), v)
	if err != nil {
		t.Fatal(err)
	}
	hs := int(h.Size)
	keyID, _ := KeyID(key.Public())
	manifest := func(mod func(string) string) []byte {
		return []byte(mod(string(h.Raw)))
	}
	repl := func(old, new string) func(string) string {
		return func(s string) string {
			if !strings.Contains(s, old) {
				t.Fatalf("manifest %s has no %q", s, old)
			}
			return strings.Replace(s, old, new, 1)
		}
	}
	signed := func(mod func(string) string) []byte {
		return append(header(t, manifest(mod), key), good[hs:]...)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x01
		return b
	}
	kernelHash := h.Manifest.Parts[0].SHA256
	bigSize := fmt.Sprint(MaxPartSize + 1)

	for _, tc := range []struct {
		name    string
		rel     []byte
		v       *Verifier
		want    Compatible
		minSV   uint32
		err     error
		text    string // the error text starts with this
		atPart  string // the error comes from this part's reader
		noParts bool   // refused before any part was read
	}{
		{name: "unsigned", rel: append(header(t, h.Raw, nil), good[hs:]...), err: ErrBadSignature, text: "bad signature"},
		{name: "signature byte changed", rel: flip(hs - 3), err: ErrBadSignature, text: "bad signature"},
		{name: "manifest byte changed", rel: flip(12 + strings.Index(string(h.Raw), "1.2.0")), err: ErrBadSignature},
		{name: "manifest byte changed to break json", rel: flip(12), err: ErrBadSignature},
		{name: "signed by an untrusted key", rel: build(t, other, 5, p), err: ErrUnknownKey},
		{name: "no trusted key", rel: good, v: &Verifier{}, err: ErrUnknownKey},
		{name: "untrusted key claiming a trusted id", rel: append(header(t, h.Raw, other), good[hs:]...), err: ErrBadSignature},
		{name: "kernel byte changed", rel: flip(hs + 10), err: ErrHashMismatch, text: "hash mismatch", atPart: PartKernel},
		{name: "initramfs last byte changed", rel: flip(hs + len(p.kernel) + len(p.initramfs) - 1), err: ErrHashMismatch, atPart: PartInitramfs},
		{name: "dtb byte changed", rel: flip(len(good) - 1), err: ErrHashMismatch, atPart: PartDTB},
		{name: "foreign arch", rel: good, want: Compatible{"amd64", "qemu-virt", "tpm"}, err: ErrIncompatible, text: "wrong arch", noParts: true},
		{name: "foreign board", rel: good, want: Compatible{"arm64", "rpi4", "tpm"}, err: ErrIncompatible, text: "wrong board", noParts: true},
		{name: "foreign flavor", rel: good, want: Compatible{"arm64", "qemu-virt", "debug"}, err: ErrIncompatible, text: "wrong flavor", noParts: true},
		{name: "downgrade", rel: good, minSV: 6, err: ErrDowngrade, text: "downgrade", noParts: true},
		{name: "empty", rel: nil, err: ErrMalformed, text: "malformed release"},
		{name: "bad magic", rel: append([]byte("GGREL\x00\x02\n"), good[8:]...), err: ErrMalformed},
		{name: "truncated in magic", rel: good[:5], err: ErrMalformed},
		{name: "truncated in manifest", rel: good[:40], err: ErrMalformed},
		{name: "truncated in signature", rel: good[:hs-1], err: ErrMalformed},
		{name: "truncated in kernel", rel: good[:hs+100], err: ErrMalformed, atPart: PartKernel},
		{name: "truncated in dtb", rel: good[:len(good)-1], err: ErrMalformed, atPart: PartDTB},
		{name: "manifest length 0", rel: append([]byte(Magic), 0, 0, 0, 0, 0, 1, 0), err: ErrMalformed},
		{name: "manifest length 65537", rel: append([]byte(Magic), 0, 1, 0, 1), err: ErrMalformed},
		{name: "manifest length 4 GiB", rel: append([]byte(Magic), 0xff, 0xff, 0xff, 0xff), err: ErrMalformed},
		{name: "signature length 513", rel: append(append(good[:hs-len(h.Signature)-2:hs-len(h.Signature)-2], 0x02, 0x01), make([]byte, 513)...), err: ErrMalformed},
		{name: "part size above 256 MiB", rel: signed(repl(`"size":5000`, `"size":`+bigSize)), err: ErrMalformed},
		{name: "part size 0", rel: signed(repl(`"size":4`, `"size":0`)), err: ErrMalformed},
		{name: "part size negative", rel: signed(repl(`"size":4`, `"size":-4`)), err: ErrMalformed},
		{name: "part size fraction", rel: signed(repl(`"size":4`, `"size":4.5`)), err: ErrMalformed},
		{name: "unknown field", rel: signed(repl(`"format":1`, `"format":1,"extra":true`)), err: ErrMalformed},
		{name: "unknown part field", rel: signed(repl(`"size":4`, `"size":4,"offset":0`)), err: ErrMalformed},
		{name: "field in another case", rel: signed(repl(`"format"`, `"Format"`)), err: ErrMalformed},
		{name: "duplicate field", rel: signed(repl(`"format":1`, `"format":1,"format":1`)), err: ErrMalformed},
		{name: "trailing data", rel: signed(func(s string) string { return s + " {}" }), err: ErrMalformed},
		{name: "not an object", rel: signed(func(string) string { return "[1]" }), err: ErrMalformed},
		{name: "format 2", rel: signed(repl(`"format":1`, `"format":2`)), err: ErrMalformed},
		{name: "no kernel", rel: signed(repl(`{"name":"kernel","size":5000,"sha256":"`+kernelHash+`"},`, ``)), err: ErrMalformed, text: "malformed release: manifest: no kernel part"},
		{name: "kernel twice", rel: signed(repl(`"name":"dtb"`, `"name":"kernel"`)), err: ErrMalformed, text: "malformed release: manifest: part 2: kernel appears twice"},
		{name: "unknown part", rel: signed(repl(`"name":"dtb"`, `"name":"rootfs"`)), err: ErrMalformed},
		{name: "uppercase sha256", rel: signed(repl(kernelHash, strings.ToUpper(kernelHash))), err: ErrMalformed},
		{name: "short sha256", rel: signed(repl(kernelHash, kernelHash[:63])), err: ErrMalformed},
		{name: "version too long", rel: signed(repl(`"1.2.0"`, `"`+strings.Repeat("9", 65)+`"`)), err: ErrMalformed},
		{name: "version with control character", rel: signed(repl(`"1.2.0"`, `"1.2\u001b[2J"`)), err: ErrMalformed},
		{name: "empty version", rel: signed(repl(`"1.2.0"`, `""`)), err: ErrMalformed},
		{name: "security version above 65535", rel: signed(repl(`"securityVersion":5`, `"securityVersion":65536`)), err: ErrMalformed},
		{name: "no created", rel: signed(func(s string) string { return regexp.MustCompile(`"created":"[^"]*",`).ReplaceAllString(s, "") }), err: ErrMalformed, text: "malformed release: manifest: created is missing"},
		{name: "keyId of another key", rel: signed(repl(keyID, "0123456789abcdef")), err: ErrMalformed},
		{name: "board with a space", rel: signed(repl(`"qemu-virt"`, `"qemu virt"`)), err: ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.v == nil {
				tc.v = v
			}
			if tc.want == (Compatible{}) {
				tc.want = board
			}
			h, got, err := readAll(tc.rel, tc.v, tc.want, tc.minSV)
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			t.Log(err)
			if tc.text != "" && !strings.HasPrefix(strings.TrimPrefix(err.Error(), "part "+tc.atPart+": "), tc.text) {
				t.Errorf("error text %q does not start with %q", err, tc.text)
			}
			if tc.noParts && got != nil {
				t.Error("parts were read before the refusal")
			}
			if tc.atPart != "" {
				if !strings.HasPrefix(err.Error(), "part "+tc.atPart+":") {
					t.Errorf("error %q is not from part %s", err, tc.atPart)
				}
				if errors.Is(tc.err, ErrHashMismatch) {
					for _, part := range h.Manifest.Parts {
						if part.Name == tc.atPart && int64(len(got[part.Name])) != part.Size {
							t.Errorf("hash mismatch after %d of %d bytes, want at the end of the part", len(got[part.Name]), part.Size)
						}
					}
				}
			} else if h != nil && got != nil {
				t.Error("a refused release's header was accepted")
			}
		})
	}
}

// TestReadHeaderReadsNoPayload checks ReadHeader leaves the reader at the
// first part, even a reader that would give more.
func TestReadHeaderReadsNoPayload(t *testing.T) {
	key := ecKey(t)
	rel := build(t, key, 1, testPayload())
	r := bytes.NewReader(rel)
	h, err := ReadHeader(r, verifier(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if pos := int64(len(rel)) - int64(r.Len()); pos != h.Size {
		t.Errorf("ReadHeader read %d bytes, the header is %d", pos, h.Size)
	}
}

// TestPartsSkip checks Next verifies a part its caller did not read.
func TestPartsSkip(t *testing.T) {
	key := ecKey(t)
	rel := build(t, key, 1, testPayload())
	h, err := ReadHeader(bytes.NewReader(rel), verifier(t, key))
	if err != nil {
		t.Fatal(err)
	}
	rel[h.Size+1] ^= 0xff
	pr := h.Parts(bytes.NewReader(rel[h.Size:]))
	if _, _, err := pr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pr.Next(); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("skipping a tampered kernel: Next err = %v, want hash mismatch", err)
	}
	if _, _, err := pr.Next(); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("Next after a mismatch: err = %v, want it again", err)
	}
	if err := h.VerifyPayload(bytes.NewReader(rel[h.Size:])); !errors.Is(err, ErrHashMismatch) {
		t.Errorf("VerifyPayload err = %v, want hash mismatch", err)
	}
}

func TestLoadVerifier(t *testing.T) {
	dir := t.TempDir()
	ec, ed := ecKey(t), edKey(t)
	write := func(name string, blocks ...*pem.Block) string {
		var b bytes.Buffer
		for _, bl := range blocks {
			pem.Encode(&b, bl)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	pub := func(k crypto.PublicKey) *pem.Block {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	both := write("both.pem", pub(ec.Public()), pub(ed.Public()))
	v, err := LoadVerifier(both)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []crypto.Signer{ec, ed} {
		if _, _, err := readAll(build(t, k, 0, testPayload()), v, board, 0); err != nil {
			t.Errorf("%T release refused by a verifier loaded from PEM: %v", k, err)
		}
	}
	for _, tc := range []struct{ name, path, want string }{
		{"missing", filepath.Join(dir, "nope.pem"), "nope.pem"},
		{"private key", write("priv.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), `priv.pem: PEM block "PRIVATE KEY": want PUBLIC KEY`},
		{"P-384", write("p384.pem", pub(p384.Public())), "p384.pem: release: EC key on P-384"},
		{"not PEM", write("junk.pem"), "junk.pem: no PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadVerifier(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestBuildRefusals(t *testing.T) {
	key := ecKey(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	m := Manifest{Compatible: board, Version: "1", SecurityVersion: 1}
	for _, tc := range []struct {
		name   string
		m      Manifest
		parts  map[string]io.Reader
		signer crypto.Signer
		want   string
	}{
		{"no initramfs", m, map[string]io.Reader{PartKernel: strings.NewReader("k")}, key, "no initramfs part"},
		{"unknown part", m, map[string]io.Reader{PartKernel: strings.NewReader("k"), PartInitramfs: strings.NewReader("i"), "rootfs": strings.NewReader("r")}, key, `unknown part "rootfs"`},
		{"empty kernel", m, map[string]io.Reader{PartKernel: strings.NewReader(""), PartInitramfs: strings.NewReader("i")}, key, "part kernel is empty"},
		{"P-384 key", m, testPayload().readers(), p384, "P-384"},
		{"bad version", Manifest{Compatible: board, Version: "a\nb"}, testPayload().readers(), key, "version"},
		{"no board", Manifest{Compatible: Compatible{Arch: "arm64", Flavor: "tpm"}, Version: "1"}, testPayload().readers(), key, "compatible.board"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Build(io.Discard, tc.m, tc.parts, tc.signer)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCreatedKept(t *testing.T) {
	key := edKey(t)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	if err := Build(&out, Manifest{Compatible: board, Version: "1", Created: at}, testPayload().readers(), key); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(&out, verifier(t, key))
	if err != nil || !h.Manifest.Created.Equal(at) {
		t.Fatalf("created = %v (err %v), want %v", h.Manifest.Created, err, at)
	}
	if !strings.Contains(string(h.Raw), `"created":"2025-03-01T12:00:00Z"`) {
		t.Errorf("manifest %s does not hold created as RFC 3339", h.Raw)
	}
}
