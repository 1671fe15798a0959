//go:build !cgo

package hsm

import (
	"crypto"
	"fmt"
	"io"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// Module is a loaded PKCS#11 module; a build without cgo has none.
type Module struct{}

// Token is a logged-in token; a build without cgo has none.
type Token struct{}

// Key is a private key in a token; a build without cgo has none.
type Key struct{}

// OpenModule fails: loading a PKCS#11 module needs cgo.
func OpenModule(path string) (*Module, error) {
	return nil, fmt.Errorf("hsm: module %s: %w", path, ErrNoCgo)
}

// Close does nothing.
func (*Module) Close() error { return nil }

// Token fails with ErrNoCgo.
func (*Module) Token(label, pin string) (*Token, error) { return nil, ErrNoCgo }

// Key fails with ErrNoCgo.
func (*Token) Key(label string, id []byte) (*Key, error) { return nil, ErrNoCgo }

// Generate fails with ErrNoCgo.
func (*Token) Generate(label string, id []byte, kt keyspec.Type, u keyspec.Usage) (*Key, error) {
	return nil, ErrNoCgo
}

// Destroy fails with ErrNoCgo.
func (*Token) Destroy(label string, id []byte) error { return ErrNoCgo }

// Public returns nil.
func (*Key) Public() crypto.PublicKey { return nil }

// Usage returns keyspec.Sign.
func (*Key) Usage() keyspec.Usage { return keyspec.Sign }

// Sign fails with ErrNoCgo.
func (*Key) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) { return nil, ErrNoCgo }

// Decrypt fails with ErrNoCgo.
func (*Key) Decrypt(io.Reader, []byte, crypto.DecrypterOpts) ([]byte, error) { return nil, ErrNoCgo }
