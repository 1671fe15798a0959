package release

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Build writes a signed release of parts to w. It fills in m.Format,
// m.Parts (in the order kernel, initramfs, dtb), m.KeyID and, when zero,
// m.Created (now, to the second); the caller sets Compatible, Version and
// SecurityVersion. parts maps part names (kernel and initramfs required,
// dtb optional) to their contents. A reader that is also an io.Seeker (an
// *os.File) is read twice, to hash and then to copy, from its current
// offset; any other reader is buffered in memory.
func Build(w io.Writer, m Manifest, parts map[string]io.Reader, signer crypto.Signer) error {
	for name, r := range parts {
		switch name {
		case PartKernel, PartInitramfs, PartDTB:
		default:
			return fmt.Errorf("release: build: unknown part %q: want kernel, initramfs or dtb", name)
		}
		if r == nil {
			return fmt.Errorf("release: build: part %s has no reader", name)
		}
	}
	for _, name := range []string{PartKernel, PartInitramfs} {
		if parts[name] == nil {
			return fmt.Errorf("release: build: no %s part", name)
		}
	}
	keyID, err := KeyID(signer.Public())
	if err != nil {
		return fmt.Errorf("release: build: %w", err)
	}

	var sources []partSource
	m.Parts = nil
	for _, name := range []string{PartKernel, PartInitramfs, PartDTB} {
		r := parts[name]
		if r == nil {
			continue
		}
		src, part, err := hashPart(name, r)
		if err != nil {
			return err
		}
		sources = append(sources, src)
		m.Parts = append(m.Parts, part)
	}
	m.Format = FormatVersion
	m.KeyID = keyID
	if m.Created.IsZero() {
		m.Created = time.Now().UTC().Truncate(time.Second)
	}
	if err := m.validate(); err != nil {
		return fmt.Errorf("release: build: %w", err)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("release: build: %w", err)
	}
	if len(raw) > MaxManifestSize {
		return fmt.Errorf("release: build: manifest of %d bytes is above %d", len(raw), MaxManifestSize)
	}
	sig, err := Sign(raw, signer)
	if err != nil {
		return err
	}

	var hdr bytes.Buffer
	hdr.WriteString(Magic)
	hdr.Write(binary.BigEndian.AppendUint32(nil, uint32(len(raw))))
	hdr.Write(raw)
	hdr.Write(binary.BigEndian.AppendUint16(nil, uint16(len(sig))))
	hdr.Write(sig)
	if _, err := w.Write(hdr.Bytes()); err != nil {
		return fmt.Errorf("release: write header: %w", err)
	}
	for i, src := range sources {
		if err := src.copyTo(w, m.Parts[i]); err != nil {
			return err
		}
	}
	return nil
}

// partSource is where Build copies a part from.
type partSource struct {
	name   string
	buf    []byte        // a buffered part, or
	seeker io.ReadSeeker // a part read again from start
	start  int64
}

// hashPart measures and hashes a part, buffering it unless it can be read
// again.
func hashPart(name string, r io.Reader) (partSource, Part, error) {
	src := partSource{name: name}
	h := sha256.New()
	var n int64
	var err error
	if s, ok := r.(io.ReadSeeker); ok {
		if src.start, err = s.Seek(0, io.SeekCurrent); err != nil {
			return src, Part{}, fmt.Errorf("release: build: part %s: %w", name, err)
		}
		src.seeker = s
		n, err = io.Copy(h, io.LimitReader(s, MaxPartSize+1))
	} else {
		var buf bytes.Buffer
		n, err = io.Copy(io.MultiWriter(&buf, h), io.LimitReader(r, MaxPartSize+1))
		src.buf = buf.Bytes()
	}
	switch {
	case err != nil:
		return src, Part{}, fmt.Errorf("release: build: read part %s: %w", name, err)
	case n == 0:
		return src, Part{}, fmt.Errorf("release: build: part %s is empty", name)
	case n > MaxPartSize:
		return src, Part{}, fmt.Errorf("release: build: part %s is larger than %d bytes", name, MaxPartSize)
	}
	return src, Part{Name: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// copyTo writes the part to w; a part read again must still match what
// was hashed.
func (s partSource) copyTo(w io.Writer, p Part) error {
	if s.seeker == nil {
		if _, err := w.Write(s.buf); err != nil {
			return fmt.Errorf("release: write part %s: %w", s.name, err)
		}
		return nil
	}
	if _, err := s.seeker.Seek(s.start, io.SeekStart); err != nil {
		return fmt.Errorf("release: build: part %s: %w", s.name, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(s.seeker, p.Size))
	if err != nil {
		return fmt.Errorf("release: write part %s: %w", s.name, err)
	}
	if n != p.Size || hex.EncodeToString(h.Sum(nil)) != p.SHA256 {
		return errors.New("release: build: part " + s.name + " changed while the release was written")
	}
	return nil
}
