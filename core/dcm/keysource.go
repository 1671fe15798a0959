package dcm

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// StoreKeys makes server keys where the core's identity key lives:
//
//	keyspec.File    a PEM file in Dir (mode 0600)
//	keyspec.TPM     a TPM key, kept as a TSS2 PEM file in Dir
//	keyspec.PKCS11  a token key labelled LabelPrefix-<time>, on the token of crypto.PKCS11
type StoreKeys struct {
	Store *keys.Store
	// Kind is where the keys live: keys.StoreOf of the identity key.
	Kind keyspec.Backend
	// Dir holds key files; it is created mode 0700.
	Dir string
	// LabelPrefix starts token key labels (pkcs11 only).
	LabelPrefix string
	// Like is a pkcs11: reference (the identity key's) whose module,
	// token and PIN attributes new token keys share (pkcs11 only).
	Like string
	// Type is the key type: RSA-2048 in v1.
	Type keyspec.Type
	// Now names keys; nil means time.Now.
	Now func() time.Time
}

// New implements KeySource.
func (s StoreKeys) New() (crypto.Signer, string, error) {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	stamp := now().UnixNano()
	name := fmt.Sprintf("mqtt-server-%d", stamp)
	if s.Kind != keyspec.PKCS11 {
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			return nil, "", err
		}
	}
	switch s.Kind {
	case keyspec.File:
		key, err := s.Type.Generate()
		if err != nil {
			return nil, "", err
		}
		pemKey, err := keys.MarshalPEM(key)
		if err != nil {
			return nil, "", err
		}
		path := filepath.Join(s.Dir, name+".key.pem")
		if err := os.WriteFile(path, pemKey, 0o600); err != nil {
			return nil, "", err
		}
		return key, config.KeyRef{Scheme: config.SchemeFile, Path: path}.String(), nil
	case keyspec.TPM:
		ref := config.KeyRef{Scheme: config.SchemeFile, Path: filepath.Join(s.Dir, name+".tss2.pem")}.String()
		key, err := s.Store.Create(ref, s.Type, keyspec.Sign)
		return key, ref, err
	case keyspec.PKCS11:
		attrs := map[string]string{}
		if like, err := config.ParseKeyRef(s.Like); err == nil && like.Scheme == config.SchemePKCS11 {
			for k, v := range like.PKCS11 {
				if k != "object" && k != "id" {
					attrs[k] = v
				}
			}
		}
		attrs["object"], attrs["type"] = fmt.Sprintf("%s-%d", s.LabelPrefix, stamp), "private"
		ref := config.KeyRef{Scheme: config.SchemePKCS11, PKCS11: attrs}.Unredacted()
		key, err := s.Store.Create(ref, s.Type, keyspec.Sign)
		return key, ref, err
	}
	return nil, "", fmt.Errorf("dcm: unknown key store %q", s.Kind)
}

// Open implements KeySource.
func (s StoreKeys) Open(ref string) (crypto.Signer, error) { return s.Store.Open(ref) }

// Remove implements KeySource.
func (s StoreKeys) Remove(ref string) error {
	r, err := config.ParseKeyRef(ref)
	if err != nil {
		return err
	}
	if r.Scheme == config.SchemePKCS11 {
		return s.Store.Destroy(ref)
	}
	if err := os.Remove(r.Path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
