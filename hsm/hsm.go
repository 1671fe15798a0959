// Package hsm keeps private keys in a PKCS#11 token and uses them through
// github.com/miekg/pkcs11.
//
// PKCS#11 needs cgo. In a build without cgo (CGO_ENABLED=0, the static
// TPM image) the package still compiles, and OpenModule fails with
// ErrNoCgo, so a pkcs11: key reference is refused with a clear error.
//
// The API (implemented in pkcs11.go for cgo builds, nocgo.go otherwise):
//
//	func OpenModule(path string) (*Module, error)              // C_Initialize once per module
//	func (m *Module) Close() error                             // C_Finalize once nothing uses it
//	func (m *Module) Token(label, pin string) (*Token, error)  // token by label; login once; session pool
//	func (t *Token) Key(label string, id []byte) (*Key, error) // private key by label and/or CKA_ID
//	func (t *Token) Generate(label string, id []byte, kt KeyType, u Usage) (*Key, error)
//	func (t *Token) Destroy(label string, id []byte) error      // both halves of a key pair
//	func (k *Key) Public() crypto.PublicKey
//	func (k *Key) Usage() Usage
//	func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
//	func (k *Key) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error)
package hsm

import "errors"

// KeyType is the type of a key to generate. The values are ggprov's
// --type/--key-type words.
type KeyType string

// The key types a token key can have.
const (
	RSA2048 KeyType = "rsa2048"
	RSA3072 KeyType = "rsa3072"
	ECP256  KeyType = "ecp256"
	ECP384  KeyType = "ecp384"
)

// Usage says what a new key may do: signing and decryption keys are kept
// apart (CKA_SIGN or CKA_DECRYPT, not both).
type Usage int

// The usages of a key.
const (
	Sign    Usage = iota // TLS client and server keys
	Decrypt              // the SecretsManager key (RSA only)
)

// Errors callers tell apart with errors.Is.
var (
	// ErrNoCgo: this binary was built without cgo and cannot load a
	// PKCS#11 module.
	ErrNoCgo = errors.New("PKCS#11 needs a build with cgo (CGO_ENABLED=1); this binary was built without it")
	// ErrTokenAbsent: no token with the label in the module's slots.
	ErrTokenAbsent = errors.New("no such token")
	// ErrWrongPIN: the token refused the user PIN (CKR_PIN_INCORRECT).
	ErrWrongPIN = errors.New("wrong PIN")
	// ErrObjectAbsent: no private key with the label/ID on the token.
	ErrObjectAbsent = errors.New("no such key object")
	// ErrObjectExists: Generate was asked for a label or ID in use.
	ErrObjectExists = errors.New("a key with this label or ID already exists")
)
