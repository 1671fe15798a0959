// Package secrets keeps the group's secrets on the core and carries them
// from the control plane. A deployment's secrets travel and rest as one
// envelope: a fresh AES-256 data key per deployment, wrapped to the
// core's SecretsManager public key with RSA PKCS#1 v1.5 (so a key in a
// file, a TPM or a PKCS#11 token unwraps it), and the secrets JSON
// sealed with AES-GCM under that key, bound to the group, the deployment
// and the exact group.json it came with. The core stores the envelope as
// received under its write directory and keeps the opened values only in
// memory; Store serves them to the functions the group allows, logging
// every read without the value.
package secrets

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Format names the envelope layout; it is part of the authenticated data.
const Format = "ggcore-secrets/1"

// MaxEnvelope bounds an envelope's size (the control plane's answer and
// the stored file).
const MaxEnvelope = 1 << 20

// Envelope is the sealed secrets of one deployment, as JSON on the wire
// and on disk. Everything but WrappedKey and Ciphertext is clear text,
// authenticated by AES-GCM.
type Envelope struct {
	Format       string `json:"Format"`
	GroupId      string `json:"GroupId"`
	DeploymentId string `json:"DeploymentId"`
	// GroupSha256 is the lowercase hex SHA-256 of the deployment's
	// group.json: the secrets belong to that document and no other.
	GroupSha256 string `json:"GroupSha256"`
	// WrappedKey is the AES-256 data key, RSA PKCS#1 v1.5 encrypted to
	// the core's SecretsManager key.
	WrappedKey []byte `json:"WrappedKey"`
	Nonce      []byte `json:"Nonce"`      // 12 bytes
	Ciphertext []byte `json:"Ciphertext"` // AES-GCM of the Payload's JSON, tag appended
}

// Payload is what an envelope seals: the versions of each secret
// resource of the group.
type Payload struct {
	Resources []Resource `json:"Resources"`
}

// Resource is one secret resource with its deployed versions.
type Resource struct {
	ResourceId string    `json:"ResourceId"`
	ARN        string    `json:"ARN"`
	Name       string    `json:"Name"` // the secret's name
	Versions   []Version `json:"Versions"`
}

// Version is one version of a secret and its staging labels.
type Version struct {
	VersionId     string    `json:"VersionId"`
	VersionStages []string  `json:"VersionStages"`
	SecretString  *string   `json:"SecretString,omitempty"`
	SecretBinary  []byte    `json:"SecretBinary,omitempty"`
	CreatedDate   time.Time `json:"CreatedDate"`
}

// GroupHash is the hex SHA-256 of a group.json without leading and
// trailing white space, as Envelope.GroupSha256.
func GroupHash(groupJSON []byte) string {
	sum := sha256.Sum256(bytes.TrimSpace(groupJSON))
	return hex.EncodeToString(sum[:])
}

// aad is the data AES-GCM authenticates beside the ciphertext.
func (e *Envelope) aad() []byte {
	return []byte(e.Format + "\n" + e.GroupId + "\n" + e.DeploymentId + "\n" + e.GroupSha256)
}

// Seal encrypts p to pub for one deployment of a group whose group.json
// is groupJSON, with a fresh data key, and returns the envelope's JSON.
func Seal(pub *rsa.PublicKey, groupID, deploymentID string, groupJSON []byte, p Payload) ([]byte, error) {
	if pub == nil || pub.N.BitLen() < 2048 {
		return nil, errors.New("secrets: seal: want the core's RSA SecretsManager public key (at least 2048 bits)")
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("secrets: seal: %w", err)
	}
	defer clear(plain)
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("secrets: seal: data key: %w", err)
	}
	defer clear(key)
	e := Envelope{Format: Format, GroupId: groupID, DeploymentId: deploymentID, GroupSha256: GroupHash(groupJSON)}
	//lint:ignore SA1019 ggcore wraps with RSA PKCS #1 v1.5 on purpose: Greengrass v1 does (SecretsManager), and TPMs and tokens decrypt it.
	if e.WrappedKey, err = rsa.EncryptPKCS1v15(rand.Reader, pub, key); err != nil {
		return nil, fmt.Errorf("secrets: seal: wrap the data key: %w", err)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	e.Nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(e.Nonce); err != nil {
		return nil, fmt.Errorf("secrets: seal: nonce: %w", err)
	}
	e.Ciphertext = aead.Seal(nil, e.Nonce, plain, e.aad())
	return json.Marshal(e)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	return aead, nil
}

// ParseEnvelope reads an envelope's JSON and checks its clear fields,
// without decrypting anything.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxEnvelope {
		return nil, fmt.Errorf("secrets: envelope of %d bytes: at most %d", len(data), MaxEnvelope)
	}
	var e Envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("secrets: envelope: %w", err)
	}
	switch {
	case e.Format != Format:
		return nil, fmt.Errorf("secrets: envelope: Format %q: want %q", e.Format, Format)
	case e.GroupId == "" || e.DeploymentId == "":
		return nil, errors.New("secrets: envelope: GroupId and DeploymentId are required")
	case len(e.GroupSha256) != 64:
		return nil, errors.New("secrets: envelope: GroupSha256: want 64 hex digits")
	case len(e.WrappedKey) == 0:
		return nil, errors.New("secrets: envelope: WrappedKey is empty")
	case len(e.Nonce) != 12:
		return nil, fmt.Errorf("secrets: envelope: Nonce of %d bytes: want 12", len(e.Nonce))
	case len(e.Ciphertext) < 16:
		return nil, errors.New("secrets: envelope: Ciphertext is shorter than its tag")
	}
	return &e, nil
}

// Open unwraps the data key with dec (the SecretsManager key: RSA
// PKCS#1 v1.5) and decrypts the payload. A wrong key, a changed byte or
// a payload that is not JSON is an error; nothing is returned in part.
func (e *Envelope) Open(dec crypto.Decrypter) (Payload, error) {
	var p Payload
	if dec == nil {
		return p, errors.New("secrets: open: no SecretsManager key (crypto.principals.SecretsManager)")
	}
	//lint:ignore SA1019 ggcore unwraps RSA PKCS #1 v1.5 on purpose: Greengrass v1 wraps secrets with it (SecretsManager).
	key, err := dec.Decrypt(rand.Reader, e.WrappedKey, &rsa.PKCS1v15DecryptOptions{})
	if err != nil {
		return p, fmt.Errorf("secrets: open: unwrap the data key with the SecretsManager key: %w", err)
	}
	defer clear(key)
	if len(key) != 32 {
		return p, fmt.Errorf("secrets: open: data key of %d bytes: want 32 (AES-256)", len(key))
	}
	aead, err := newGCM(key)
	if err != nil {
		return p, err
	}
	plain, err := aead.Open(nil, e.Nonce, e.Ciphertext, e.aad())
	if err != nil {
		return p, errors.New("secrets: open: the secrets do not decrypt with the SecretsManager key (sealed to another key, or altered)")
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &p); err != nil {
		return Payload{}, fmt.Errorf("secrets: open: payload: %w", err)
	}
	return p, nil
}
