package release

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
)

// PartReader yields a release's parts while hashing them. A part's bytes
// are unauthenticated until its reader has returned io.EOF: use a part
// (write it as final, kexec it) only after that.
type PartReader struct {
	parts []Part
	r     io.Reader
	next  int
	cur   *partStream
	err   error // sticky
}

// Parts reads the payload that follows the header from r (r positioned
// at the first part, as ReadHeader leaves it).
func (h *Header) Parts(r io.Reader) *PartReader {
	return &PartReader{parts: h.Manifest.Parts, r: r}
}

// Next returns the next part and a reader of exactly its bytes, or io.EOF
// after the last. The part's reader returns an error wrapping
// ErrHashMismatch instead of io.EOF when the part's bytes do not match its
// SHA-256, and ErrMalformed if the release ends early. Next reads and
// checks the unread rest of the previous part first.
func (p *PartReader) Next() (Part, io.Reader, error) {
	if p.err != nil {
		return Part{}, nil, p.err
	}
	if p.cur != nil {
		if _, err := io.Copy(io.Discard, p.cur); err != nil {
			p.err = err
			return Part{}, nil, err
		}
		p.cur = nil
	}
	if p.next == len(p.parts) {
		return Part{}, nil, io.EOF
	}
	part := p.parts[p.next]
	p.next++
	p.cur = &partStream{part: part, r: p.r, left: part.Size, h: sha256.New()}
	return part, p.cur, nil
}

// partStream reads one part and checks its hash at its end.
type partStream struct {
	part Part
	r    io.Reader
	left int64
	h    hash.Hash
	err  error // sticky: io.EOF once verified
}

func (s *partStream) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if s.left == 0 {
		s.err = s.finish()
		return 0, s.err
	}
	if int64(len(b)) > s.left {
		b = b[:s.left]
	}
	n, err := s.r.Read(b)
	s.h.Write(b[:n])
	s.left -= int64(n)
	switch {
	case err == nil || (errors.Is(err, io.EOF) && s.left == 0):
		return n, nil
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		s.err = fmt.Errorf("%w: truncated in part %s (%d of %d bytes missing): %w",
			ErrMalformed, s.part.Name, s.left, s.part.Size, io.ErrUnexpectedEOF)
	default:
		s.err = fmt.Errorf("release: read part %s: %w", s.part.Name, err)
	}
	return n, s.err
}

func (s *partStream) finish() error {
	if got := hex.EncodeToString(s.h.Sum(nil)); got != s.part.SHA256 {
		return fmt.Errorf("%w: part %s has sha256 %s, the manifest says %s", ErrHashMismatch, s.part.Name, got, s.part.SHA256)
	}
	return io.EOF
}

// VerifyPayload reads every part from r (positioned at the first part) and
// checks its hash; it does not look past the last part.
func (h *Header) VerifyPayload(r io.Reader) error {
	pr := h.Parts(r)
	for {
		_, _, err := pr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
