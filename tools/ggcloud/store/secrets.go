package store

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"regexp"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/secrets"
)

// Buckets of the secrets manager.
var (
	// bSecrets holds the secrets: name -> Secret (with every version's value).
	bSecrets = []byte("secrets")
	// bSecretsKeys holds each core's SecretsManager public key: thing name -> PEM.
	bSecretsKeys = []byte("secretsKeys")
	// bEnvelopes holds each deployment's sealed secrets:
	// "groupID/deploymentID" -> envelope JSON (see core/secrets).
	bEnvelopes = []byte("secretEnvelopes")
)

// Staging labels Secrets Manager moves by itself.
const (
	StageCurrent  = config.StageCurrent // the current version
	StagePrevious = "AWSPREVIOUS"       // the version AWSCURRENT moved from
)

// Limits of the secrets manager, as AWS Secrets Manager's.
const (
	maxSecretValue    = 65536
	maxSecretVersions = 100 // versions kept; the oldest unlabelled go first
)

// Secret is a secret of the secrets manager with its versions.
type Secret struct {
	Name      string          `json:"name"`
	ARN       string          `json:"arn"`
	CreatedAt time.Time       `json:"createdAt"`
	Versions  []SecretVersion `json:"versions"` // oldest first
}

// SecretVersion is one value of a secret and the staging labels on it.
// Listings leave the value out.
type SecretVersion struct {
	ID        string    `json:"id"`
	Stages    []string  `json:"stages"`
	String    *string   `json:"string,omitempty"`
	Binary    []byte    `json:"binary,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
}

// SecretValue is a value to store: exactly one of String and Binary.
type SecretValue struct {
	String *string
	Binary []byte
}

func (v SecretValue) check() error {
	switch {
	case (v.String == nil) == (v.Binary == nil):
		return fmt.Errorf("store: secret value: want exactly one of a string and a binary value")
	case v.String != nil && len(*v.String) > maxSecretValue, len(v.Binary) > maxSecretValue:
		return fmt.Errorf("store: secret value: at most %d bytes", maxSecretValue)
	}
	return nil
}

// secretName is Secrets Manager's pattern for secret names.
var secretName = regexp.MustCompile(`^[a-zA-Z0-9/_+=.@-]{1,512}$`)

// CreateSecret creates a secret whose first version, value, is labelled
// AWSCURRENT, and returns it without values. A taken name is ErrExists.
func (s *Store) CreateSecret(name string, value SecretValue) (Secret, error) {
	if !secretName.MatchString(name) {
		return Secret{}, fmt.Errorf("store: secret name %q: want 1-512 characters [a-zA-Z0-9/_+=.@-]", name)
	}
	if err := value.check(); err != nil {
		return Secret{}, err
	}
	var sec Secret
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSecrets)
		if b.Get([]byte(name)) != nil {
			return fmt.Errorf("store: secret %s: %w", name, ErrExists)
		}
		id, err := fixIdentity(tx)
		if err != nil {
			return err
		}
		suffix, err := randomWord(6)
		if err != nil {
			return err
		}
		vid, err := newDeploymentID()
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		sec = Secret{
			Name: name, ARN: fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:%s-%s", id.Region, id.Account, name, suffix), CreatedAt: now,
			Versions: []SecretVersion{{ID: vid, Stages: []string{StageCurrent}, String: value.String, Binary: value.Binary, CreatedAt: now}},
		}
		return put(b, name, sec)
	})
	return withoutValues(sec), err
}

// PutSecretValue adds a version to a secret (named by name or ARN) with
// the staging labels stages (none: AWSCURRENT) and returns it without its
// value. Each label moves to the new version; when AWSCURRENT moves, the
// version it leaves is labelled AWSPREVIOUS.
func (s *Store) PutSecretValue(secretID string, value SecretValue, stages []string) (SecretVersion, error) {
	if err := value.check(); err != nil {
		return SecretVersion{}, err
	}
	if len(stages) == 0 {
		stages = []string{StageCurrent}
	}
	for _, l := range stages {
		if l == "" || len(l) > 256 {
			return SecretVersion{}, fmt.Errorf("store: staging label %q: want 1-256 characters", l)
		}
	}
	stages = slices.Compact(slices.Sorted(slices.Values(stages)))
	var nv SecretVersion
	err := s.db.Update(func(tx *bolt.Tx) error {
		sec, err := secretByID(tx, secretID)
		if err != nil {
			return err
		}
		vid, err := newDeploymentID()
		if err != nil {
			return err
		}
		nv = SecretVersion{ID: vid, Stages: stages, String: value.String, Binary: value.Binary, CreatedAt: time.Now().UTC()}
		movesCurrent := slices.Contains(stages, StageCurrent)
		for i := range sec.Versions {
			v := &sec.Versions[i]
			wasCurrent := slices.Contains(v.Stages, StageCurrent)
			v.Stages = slices.DeleteFunc(slices.Clone(v.Stages), func(l string) bool {
				return slices.Contains(stages, l) || movesCurrent && l == StagePrevious
			})
			if movesCurrent && wasCurrent {
				v.Stages = append(v.Stages, StagePrevious)
			}
		}
		sec.Versions = append(sec.Versions, nv)
		for len(sec.Versions) > maxSecretVersions {
			i := slices.IndexFunc(sec.Versions, func(v SecretVersion) bool { return len(v.Stages) == 0 })
			if i < 0 {
				break
			}
			sec.Versions = slices.Delete(sec.Versions, i, i+1)
		}
		return put(tx.Bucket(bSecrets), sec.Name, sec)
	})
	nv.String, nv.Binary = nil, nil
	return nv, err
}

// Secrets lists the secrets in name order, without values.
func (s *Store) Secrets() ([]Secret, error) {
	var out []Secret
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Secret](tx.Bucket(bSecrets))
		return err
	})
	for i := range out {
		out[i] = withoutValues(out[i])
	}
	return out, err
}

// Secret returns a secret, named by name or ARN, without values.
func (s *Store) Secret(secretID string) (Secret, error) {
	var sec Secret
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		sec, err = secretByID(tx, secretID)
		return err
	})
	return withoutValues(sec), err
}

func withoutValues(sec Secret) Secret {
	sec.Versions = slices.Clone(sec.Versions)
	for i := range sec.Versions {
		sec.Versions[i].String, sec.Versions[i].Binary = nil, nil
	}
	return sec
}

// secretByID finds a secret by name or ARN.
func secretByID(tx *bolt.Tx, secretID string) (Secret, error) {
	var sec Secret
	b := tx.Bucket(bSecrets)
	if b.Get([]byte(secretID)) != nil {
		return sec, get(b, "secret", secretID, &sec)
	}
	if name := config.SecretName(secretID); name != "" && b.Get([]byte(name)) != nil {
		if err := get(b, "secret", name, &sec); err != nil {
			return sec, err
		}
		if sec.ARN == secretID {
			return sec, nil
		}
	}
	return Secret{}, fmt.Errorf("store: secret %s: %w", secretID, ErrNotFound)
}

const wordChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func randomWord(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("store: %w", err)
	}
	for i := range b {
		b[i] = wordChars[int(b[i])%len(wordChars)]
	}
	return string(b), nil
}

// SecretResource is a group resource of v1's SecretsManagerSecretResourceData
// kind: the secret (by ARN) whose AWSCURRENT version, and those with the
// additional labels, are deployed to the group's core.
type SecretResource struct {
	Id                                string   `json:"Id"`
	Name                              string   `json:"Name"`
	ARN                               string   `json:"ARN"`
	AdditionalStagingLabelsToDownload []string `json:"AdditionalStagingLabelsToDownload,omitempty"`
}

// AddSecretResource adds a secret resource to a group; r.ARN may name
// the secret by name, and becomes its ARN. Adding the same resource again
// changes nothing; another one under a taken Id, or a second resource
// for the same secret, is ErrExists. It returns the resource as stored.
func (s *Store) AddSecretResource(groupID string, r SecretResource) (SecretResource, error) {
	if !thingName.MatchString(r.Id) {
		return r, fmt.Errorf("store: resource Id %q: want 1-128 characters [a-zA-Z0-9:_-]", r.Id)
	}
	for _, l := range r.AdditionalStagingLabelsToDownload {
		if l == "" || len(l) > 256 {
			return r, fmt.Errorf("store: staging label %q: want 1-256 characters", l)
		}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		sec, err := secretByID(tx, r.ARN)
		if err != nil {
			return err
		}
		r.ARN = sec.ARN
		if r.Name == "" {
			r.Name = r.Id
		}
		for _, old := range g.Resources {
			switch {
			case old.Id == r.Id && slices.Equal(old.AdditionalStagingLabelsToDownload, r.AdditionalStagingLabelsToDownload) && old.ARN == r.ARN && old.Name == r.Name:
				return nil
			case old.Id == r.Id:
				return fmt.Errorf("store: group %s: resource %s exists (secret %s): %w", groupID, r.Id, old.ARN, ErrExists)
			case old.ARN == r.ARN:
				return fmt.Errorf("store: group %s: secret %s is already resource %s (a group references a secret once): %w", groupID, r.ARN, old.Id, ErrExists)
			}
		}
		g.Resources = append(slices.Clone(g.Resources), r)
		return saveGroup(tx, g)
	})
	return r, err
}

// RemoveResource takes a resource out of a group; an unknown Id is
// ErrNotFound.
func (s *Store) RemoveResource(groupID, id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var g Group
		if err := get(tx.Bucket(bGroups), "group", groupID, &g); err != nil {
			return err
		}
		i := slices.IndexFunc(g.Resources, func(r SecretResource) bool { return r.Id == id })
		if i < 0 {
			return fmt.Errorf("store: group %s: resource %s: %w", groupID, id, ErrNotFound)
		}
		g.Resources = slices.Delete(slices.Clone(g.Resources), i, i+1)
		return saveGroup(tx, g)
	})
}

// SetSecretsKey records a core's SecretsManager public key (PEM, RSA of
// at least 2048 bits), which deployments seal the group's secrets to.
// Setting the same key again changes nothing; another key replaces it.
func (s *Store) SetSecretsKey(thing string, pubPEM []byte) error {
	if _, err := parseSecretsKey(pubPEM); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if !thingExists(tx, thing) {
			return fmt.Errorf("store: thing %s: %w", thing, ErrNotFound)
		}
		return tx.Bucket(bSecretsKeys).Put([]byte(thing), pubPEM)
	})
}

// SecretsKey returns a core's SecretsManager public key (PEM).
func (s *Store) SecretsKey(thing string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bSecretsKeys).Get([]byte(thing))
		if v == nil {
			return fmt.Errorf("store: SecretsManager key of %s: %w", thing, ErrNotFound)
		}
		out = slices.Clone(v)
		return nil
	})
	return out, err
}

func parseSecretsKey(pubPEM []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(pubPEM)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("store: SecretsManager key: want a PEM PUBLIC KEY")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("store: SecretsManager key: %w", err)
	}
	if err := keys.CheckPrincipal("SecretsManager", pub); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return pub.(*rsa.PublicKey), nil
}

// renderResources writes the group's resources in group.json's shape.
func renderResources(g Group) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	for _, r := range g.Resources {
		data := map[string]any{"ARN": r.ARN, "AdditionalStagingLabelsToDownload": nonNil(r.AdditionalStagingLabelsToDownload)}
		raw, err := json.Marshal(map[string]any{
			"Id": r.Id, "Name": r.Name,
			"ResourceDataContainer": map[string]any{"SecretsManagerSecretResourceData": data},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, raw)
	}
	return out, nil
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

// sealSecrets seals the versions the group's secret resources deploy to
// its core's SecretsManager key, for one deployment of document doc; nil
// when the group has none.
func sealSecrets(tx *bolt.Tx, g Group, deploymentID string, doc []byte) ([]byte, error) {
	if len(g.Resources) == 0 {
		return nil, nil
	}
	pubPEM := tx.Bucket(bSecretsKeys).Get([]byte(g.Core))
	if pubPEM == nil {
		return nil, fmt.Errorf("the group has secret resources but core %s has no registered SecretsManager key (ggprov register records it)", g.Core)
	}
	pub, err := parseSecretsKey(pubPEM)
	if err != nil {
		return nil, err
	}
	var p secrets.Payload
	for _, r := range g.Resources {
		sec, err := secretByID(tx, r.ARN)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %w", r.Id, err)
		}
		res := secrets.Resource{ResourceId: r.Id, ARN: sec.ARN, Name: sec.Name, Versions: []secrets.Version{}}
		cr := config.SecretResource{Id: r.Id, ARN: r.ARN, AdditionalStagingLabelsToDownload: r.AdditionalStagingLabelsToDownload}
		for _, l := range cr.Labels() {
			i := slices.IndexFunc(sec.Versions, func(v SecretVersion) bool { return slices.Contains(v.Stages, l) })
			if i < 0 {
				return nil, fmt.Errorf("resource %s: secret %s has no version labelled %s", r.Id, sec.Name, l)
			}
			v := sec.Versions[i]
			if slices.ContainsFunc(res.Versions, func(x secrets.Version) bool { return x.VersionId == v.ID }) {
				continue
			}
			res.Versions = append(res.Versions, secrets.Version{VersionId: v.ID, VersionStages: v.Stages, SecretString: v.String, SecretBinary: v.Binary, CreatedDate: v.CreatedAt})
		}
		p.Resources = append(p.Resources, res)
	}
	env, err := secrets.Seal(pub, g.ID, deploymentID, doc, p)
	if err != nil {
		return nil, err
	}
	return env, nil
}

// SecretsEnvelope returns a deployment's sealed secrets; ErrNotFound
// when it carries none.
func (s *Store) SecretsEnvelope(groupID, deploymentID string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if _, err := deployment(tx, groupID, deploymentID); err != nil {
			return err
		}
		v := tx.Bucket(bEnvelopes).Get([]byte(groupID + "/" + deploymentID))
		if v == nil {
			return fmt.Errorf("store: group %s: deployment %s carries no secrets: %w", groupID, deploymentID, ErrNotFound)
		}
		out = slices.Clone(v)
		return nil
	})
	return out, err
}
