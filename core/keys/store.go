package keys

import (
	"crypto"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/hsm"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tpm"
)

// StoreOptions says where a Store finds hardware keys.
type StoreOptions struct {
	// TPMDevice is ggcore.tpm.device, in keyspec.ParseTPMDevice's syntax:
	// a device node, unix:///path or tcp://HOST:PORT. "" means
	// keyspec.DefaultTPMDevice.
	TPMDevice string
	// PKCS11 is config.json's crypto.PKCS11: the module, token and PIN of
	// pkcs11: references that do not name their own. Nil if absent.
	PKCS11 *config.PKCS11
	// OpenTPM opens the TPM at a device (TPMDevice, or its default) on
	// the store's first use of it; nil means tpm.Open. ggcore passes one
	// that hands over a connection it began to open before it had read
	// its config.
	OpenTPM func(device string) (*tpm.TPM, error)
}

// Store opens keys by reference (file://, TSS2 PEM files, tpm2:, handle:,
// pkcs11:) and owns what hardware keys need: one TPM connection and one
// PKCS#11 module per path, each opened on first use and shared by every
// key. It is safe for concurrent use. Close releases them; keys opened
// from a Store stop working after Close.
type Store struct {
	opts StoreOptions

	mu      sync.Mutex
	tpm     *tpm.TPM
	modules map[string]*hsm.Module // by module path
	closed  bool
}

// NewStore returns a Store that opens nothing until a key needs it.
func NewStore(opts StoreOptions) *Store {
	return &Store{opts: opts, modules: make(map[string]*hsm.Module)}
}

// Close flushes the TPM keys the Store loaded, closes the TPM connection
// and finalises the PKCS#11 modules. It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.tpm != nil {
		errs = append(errs, s.tpm.Close())
	}
	for path, m := range s.modules {
		if err := m.Close(); err != nil {
			errs = append(errs, fmt.Errorf("keys: close PKCS#11 module %s: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// Open returns a signer for the key named by ref. The signer of an RSA
// key that may decrypt also implements crypto.Decrypter (PKCS#1 v1.5). A
// TPM or token key that may only decrypt (a SecretsManager key) is still
// returned as a crypto.Signer, whose Sign fails: CheckKey tells a
// principal's key is fit for its use.
func (s *Store) Open(ref string) (crypto.Signer, error) {
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	switch r.Scheme {
	case config.SchemeFile:
		return s.openFile(r.Path)
	case config.SchemeTPM2:
		t, err := s.tpmConn()
		if err != nil {
			return nil, err
		}
		k, err := t.Persistent(r.Handle)
		if err != nil {
			return nil, fmt.Errorf("keys: %s: %w", r, err)
		}
		return tpmKey(k), checkHardware(r, k.Public())
	case config.SchemePKCS11:
		tok, label, id, err := s.token(r)
		if err != nil {
			return nil, err
		}
		k, err := tok.Key(label, id)
		if err != nil {
			return nil, fmt.Errorf("keys: %s: %w", r, err)
		}
		return tokenKey(k), checkHardware(r, k.Public())
	}
	return nil, fmt.Errorf("keys: %s: unknown key scheme %q", ref, r.Scheme)
}

// checkHardware refuses a TPM or token key of a type ggcore does not
// accept, naming the reference.
func checkHardware(r config.KeyRef, pub crypto.PublicKey) error {
	if err := Check(pub); err != nil {
		return fmt.Errorf("keys: %s: %w", r, err)
	}
	return nil
}

// openFile opens a PEM key file: a plain private key, or a TPM-wrapped
// TSS2 key that is loaded into the TPM.
func (s *Store) openFile(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if !isTSS2(data) {
		key, err := ParsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("keys: %s: %w", path, err)
		}
		return key, nil
	}
	blob, err := tpm.ParsePEM(data)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	t, err := s.tpmConn()
	if err != nil {
		return nil, fmt.Errorf("keys: %s is a TPM key: %w", path, err)
	}
	k, err := t.Load(blob)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: load into the TPM at %s: %w", path, s.tpmDevice(), err)
	}
	if err := Check(k.Public()); err != nil {
		return nil, fmt.Errorf("keys: %s: %w", path, err)
	}
	return tpmKey(k), nil
}

// isTSS2 reports a "TSS2 PRIVATE KEY" PEM file.
func isTSS2(data []byte) bool {
	block, _ := pem.Decode(data)
	return block != nil && block.Type == "TSS2 PRIVATE KEY"
}

func (s *Store) tpmDevice() string {
	if s.opts.TPMDevice == "" {
		return keyspec.DefaultTPMDevice
	}
	return s.opts.TPMDevice
}

// TPM returns the store's TPM connection, opening it on first use (the
// one connection of this process: swtpm serves one client at a time).
func (s *Store) TPM() (*tpm.TPM, error) { return s.tpmConn() }

// tpmConn opens the TPM on first use.
func (s *Store) tpmConn() (*tpm.TPM, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("keys: store is closed")
	}
	if s.tpm == nil {
		open := s.opts.OpenTPM
		if open == nil {
			open = tpm.Open
		}
		t, err := open(s.tpmDevice())
		if err != nil {
			return nil, fmt.Errorf("keys: %w (ggcore.tpm.device in config.json names the TPM)", err)
		}
		s.tpm = t
	}
	return s.tpm, nil
}

// token resolves a pkcs11: reference's module, token and PIN (from the
// reference, else from crypto.PKCS11), logs in once per token and returns
// the token with the key's label and ID.
func (s *Store) token(r config.KeyRef) (tok *hsm.Token, label string, id []byte, err error) {
	a := r.PKCS11
	var defaults config.PKCS11
	if s.opts.PKCS11 != nil {
		defaults = *s.opts.PKCS11
	}
	module := a["module-path"]
	if module == "" {
		module = defaults.P11Provider
	}
	tokenLabel, ok := a["token"]
	if !ok {
		tokenLabel = defaults.SlotLabel
	}
	switch {
	case module == "":
		return nil, "", nil, fmt.Errorf("keys: %s: no PKCS#11 module: set crypto.PKCS11.P11Provider or add ?module-path=/path/to/module.so", r)
	case tokenLabel == "":
		return nil, "", nil, fmt.Errorf("keys: %s: no token: set crypto.PKCS11.slotLabel or add ;token=LABEL", r)
	}
	pin, err := resolvePIN(a, defaults.SlotUserPin)
	if err != nil {
		return nil, "", nil, fmt.Errorf("keys: %s: %w", r, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, "", nil, errors.New("keys: store is closed")
	}
	m := s.modules[module]
	if m == nil {
		if m, err = hsm.OpenModule(module); err != nil {
			return nil, "", nil, fmt.Errorf("keys: %s: %w", r, err)
		}
		s.modules[module] = m
	}
	// The module shares one login per token, and refuses a second PIN.
	if tok, err = m.Token(tokenLabel, pin); err != nil {
		return nil, "", nil, fmt.Errorf("keys: %s: %w", r, err)
	}
	return tok, a["object"], []byte(a["id"]), nil
}

// resolvePIN returns the user PIN of a pkcs11: reference: from the file
// named by pin-source, from pin-value, else fallback (crypto.PKCS11's
// slotUserPin).
func resolvePIN(attrs map[string]string, fallback string) (string, error) {
	if v, ok := attrs["pin-value"]; ok {
		return v, nil
	}
	if src, ok := attrs["pin-source"]; ok {
		return ReadPINSource(src)
	}
	if fallback == "" {
		return "", errors.New("no PIN: set crypto.PKCS11.slotUserPin or add ?pin-source=file:///path/to/pin")
	}
	return fallback, nil
}

// ReadPINSource reads a PIN from the file a pin-source names
// (file:///path, or an absolute path). One trailing newline is dropped.
func ReadPINSource(src string) (string, error) {
	path := src
	if strings.HasPrefix(src, "file:") {
		r, err := config.ParseKeyRef(src)
		if err != nil {
			return "", fmt.Errorf("pin-source: %w", err)
		}
		path = r.Path
	}
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("pin-source %q: want file:///absolute/path of a file holding the PIN", src)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("pin-source: %w", err)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("pin-source %s is empty", path)
	}
	return pin, nil
}

// Create makes a new key of type kt inside a TPM or token, where ref
// says, and returns it opened:
//
//	file:///path.pem       a TPM key, written as a TSS2 PRIVATE KEY file (mode 0600; an existing file is refused)
//	tpm2:handle=0x81…      a TPM key, made persistent at the handle (a used handle is refused)
//	pkcs11:object=LABEL;…  a token key with that label (and id, if given; an existing label or id is refused)
//
// Plain file keys are not made here: keyspec.Type.Generate and
// MarshalPEM make them. On failure nothing is left behind.
func (s *Store) Create(ref string, kt keyspec.Type, u keyspec.Usage) (crypto.Signer, error) {
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	if _, err := keyspec.ParseType(string(kt)); err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", r, err)
	}
	if err := u.Check(kt); err != nil {
		return nil, fmt.Errorf("keys: create %s: %w (SecretsManager wraps with RSA PKCS#1 v1.5)", r, err)
	}
	switch r.Scheme {
	case config.SchemeFile:
		return s.createTPMFile(r.Path, kt, u)
	case config.SchemeTPM2:
		t, err := s.tpmConn()
		if err != nil {
			return nil, err
		}
		blob, err := t.Create(kt, u)
		if err != nil {
			return nil, fmt.Errorf("keys: create %s: %w", r, err)
		}
		k, err := t.Persist(blob, r.Handle)
		if err != nil {
			return nil, fmt.Errorf("keys: create %s: %w", r, err)
		}
		return tpmKey(k), nil
	case config.SchemePKCS11:
		tok, label, id, err := s.token(r)
		if err != nil {
			return nil, err
		}
		k, err := tok.Generate(label, id, kt, u)
		if err != nil {
			return nil, fmt.Errorf("keys: create %s: %w", r, err)
		}
		return tokenKey(k), nil
	}
	return nil, fmt.Errorf("keys: create %s: unknown key scheme %q", ref, r.Scheme)
}

// createTPMFile makes a TPM key and writes its TSS2 PEM file at path.
func (s *Store) createTPMFile(path string, kt keyspec.Type, u keyspec.Usage) (crypto.Signer, error) {
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("keys: create %s: the file exists; remove it first or choose another path", path)
	}
	t, err := s.tpmConn()
	if err != nil {
		return nil, err
	}
	blob, err := t.Create(kt, u)
	if err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", path, err)
	}
	k, err := t.Load(blob)
	if err != nil {
		return nil, fmt.Errorf("keys: create %s: load: %w", path, err)
	}
	if err := writeNew(path, blob.MarshalPEM()); err != nil {
		return nil, fmt.Errorf("keys: create %s: %w", path, err)
	}
	return tpmKey(k), nil
}

// writeNew writes data to a new file with mode 0600, refusing to replace
// one, and removes what it wrote on failure.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// hardwareKey is a TPM or token key as the rest of ggcore sees it. It is
// a crypto.Signer, and a crypto.Decrypter only when it was made for
// decryption (decryptionKey): crypto/tls treats every Decrypter as an RSA
// key-exchange key, and refuses one whose public key is not RSA.
type hardwareKey struct {
	key interface {
		crypto.Signer
		crypto.Decrypter
	}
	store keyspec.Backend // keyspec.TPM or keyspec.PKCS11
}

func (h *hardwareKey) Public() crypto.PublicKey { return h.key.Public() }

func (h *hardwareKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return h.key.Sign(rand, digest, opts)
}

// decryptionKey is a hardwareKey made for decryption.
type decryptionKey struct{ hardwareKey }

func (d *decryptionKey) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return d.key.Decrypt(rand, msg, opts)
}

func tpmKey(k *tpm.Key) crypto.Signer {
	h := hardwareKey{key: k, store: keyspec.TPM}
	if k.Usage() == keyspec.Decrypt {
		return &decryptionKey{h}
	}
	return &h
}

func tokenKey(k *hsm.Key) crypto.Signer {
	h := hardwareKey{key: k, store: keyspec.PKCS11}
	if k.Usage() == keyspec.Decrypt {
		return &decryptionKey{h}
	}
	return &h
}

// KeyUsage reports what a key opened by a Store may do: file keys may do
// both (an RSA file key decrypts too); TPM and token keys one or the
// other, as they were created.
func KeyUsage(key crypto.Signer) (sign, decrypt bool) {
	switch key.(type) {
	case *hardwareKey:
		return true, false
	case *decryptionKey:
		return false, true
	}
	_, isDecrypter := key.(crypto.Decrypter)
	_, isRSA := key.Public().(*rsa.PublicKey)
	return true, isDecrypter && isRSA
}

// CheckKey checks that key suits principal, as CheckPrincipal does, and
// that it may be used as the principal uses it: SecretsManager decrypts,
// the others sign.
func CheckKey(principal string, key crypto.Signer) error {
	if err := CheckPrincipal(principal, key.Public()); err != nil {
		return err
	}
	sign, decrypt := KeyUsage(key)
	switch {
	case principal == "SecretsManager" && !decrypt:
		return unsupported("%s key may only sign: SecretsManager needs a key created for decryption (ggprov keys create --usage decrypt)", Describe(key.Public()))
	case principal != "SecretsManager" && !sign:
		return unsupported("%s key may only decrypt: %s needs a key created for signing", Describe(key.Public()), principal)
	}
	return nil
}

// IsHardware reports a key held by a TPM or token, whose private part
// ggcore cannot read.
func IsHardware(key crypto.Signer) bool {
	return StoreOf(key) != keyspec.File
}

// StoreOf names where a key opened by a Store lives: keyspec.TPM,
// keyspec.PKCS11 or keyspec.File.
func StoreOf(key crypto.Signer) keyspec.Backend {
	switch k := key.(type) {
	case *hardwareKey:
		return k.store
	case *decryptionKey:
		return k.store
	}
	return keyspec.File
}

// Destroy deletes a token key (its private and public objects) that
// Create made, for undoing a provisioning step that failed later. Only
// pkcs11: references can be destroyed: a TPM key file is removed with
// the file.
func (s *Store) Destroy(ref string) error {
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if r.Scheme != config.SchemePKCS11 {
		return fmt.Errorf("keys: destroy %s: only token keys are destroyed here", r)
	}
	tok, label, id, err := s.token(r)
	if err != nil {
		return err
	}
	if err := tok.Destroy(label, id); err != nil {
		return fmt.Errorf("keys: destroy %s: %w", r, err)
	}
	return nil
}
