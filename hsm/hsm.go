// Package hsm keeps private keys in a PKCS#11 token and uses them through
// github.com/miekg/pkcs11. Key types and usages are those of
// internal/keyspec, the vocabulary the rest of ggcore shares.
//
// PKCS#11 needs cgo. In a build without cgo (CGO_ENABLED=0, the static
// TPM image) the package still compiles, and OpenModule fails with
// ErrNoCgo, so a pkcs11: key reference is refused with a clear error.
//
// The API:
//
//	func OpenModule(path string) (*Module, error)              // C_Initialize once per module
//	func (m *Module) Close() error                             // C_Finalize once nothing uses it
//	func (m *Module) Token(label, pin string) (*Token, error)  // token by label; login once; session pool
//	func (t *Token) Key(label string, id []byte) (*Key, error) // private key by label and/or CKA_ID
//	func (t *Token) Generate(label string, id []byte, kt keyspec.Type, u keyspec.Usage) (*Key, error)
//	func (t *Token) Destroy(label string, id []byte) error     // both halves of a key pair
//	func (k *Key) Public() crypto.PublicKey
//	func (k *Key) Usage() keyspec.Usage                        // keyspec.Decrypt for a decrypt-only key, else keyspec.Sign
//	func (k *Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error)
//	func (k *Key) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error)
//
// Errors callers tell apart with errors.Is: ErrNoCgo, ErrTokenAbsent,
// ErrWrongPIN, ErrObjectAbsent, ErrObjectExists.
//
// In cgo builds the implementation is split by job: module.go (the
// process's registry of modules, initialised and finalised once per path),
// token.go (token lookup, login and the session pool), key.go (key lookup
// and public keys), generate.go (Generate, Destroy), sign.go (Sign,
// Decrypt) and errors.go (CKR_* codes mapped to the errors above). They
// call the module only through cryptoki (cryptoki.go), the few methods of
// *pkcs11.Ctx they use, so the tests can put a fake module in its place.
// nocgo.go is the build without cgo.
package hsm

import "errors"

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
