package secrets

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/atomicfile"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound = errors.New("secret not found")
	ErrDenied   = errors.New("access denied")
)

// Secret is one version of a deployed secret, as a function reads it.
type Secret struct {
	// ResourceID is the group's resource Id, which a function's
	// ResourceAccessPolicies name.
	ResourceID    string
	ARN, Name     string
	VersionID     string
	VersionStages []string
	// Exactly one of SecretString and SecretBinary is set.
	SecretString *string
	SecretBinary []byte
	CreatedDate  time.Time
}

// Store holds the running group's secrets: the envelope on disk under
// its directory, the opened values in memory. It is safe for concurrent
// use.
type Store struct {
	dir string
	dec crypto.Decrypter
	log *slog.Logger

	mu        sync.RWMutex
	resources []Resource
	file      string // the envelope in use ("" for none)
}

// New returns an empty store keeping its envelopes in dir (made 0700 on
// first use), opened with dec, the SecretsManager key (nil: secrets
// cannot be deployed). log nil means slog.Default().
func New(dir string, dec crypto.Decrypter, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{dir: dir, dec: dec, log: log.With("component", "secrets")}
}

// Staged is a deployment's checked secrets, written beside the running
// ones; nothing served changes until Commit.
type Staged struct {
	s         *Store
	resources []Resource
	file      string
	done      bool
}

// Stage checks a deployment's secrets before anything changes: the
// envelope must be this deployment's and this group.json's, open with
// the SecretsManager key, and hold every staging label of every secret
// resource of the group and nothing else. It writes the envelope durably
// as received (0600), named by the group.json's hash, and returns it
// staged. A group without secret resources takes no envelope (nil).
func (s *Store) Stage(groupID, deploymentID string, groupJSON, envelope []byte, resources []config.SecretResource) (*Staged, error) {
	if len(resources) == 0 {
		if len(envelope) != 0 {
			return nil, errors.New("secrets: the deployment carries secrets but its group has no secret resource")
		}
		return &Staged{s: s}, nil
	}
	if len(envelope) == 0 {
		return nil, fmt.Errorf("secrets: the group has %d secret resources but the deployment carries no secrets", len(resources))
	}
	e, err := ParseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	switch {
	case e.GroupId != groupID || e.DeploymentId != deploymentID:
		return nil, fmt.Errorf("secrets: the envelope is of group %s deployment %s, not group %s deployment %s",
			e.GroupId, e.DeploymentId, groupID, deploymentID)
	case e.GroupSha256 != GroupHash(groupJSON):
		return nil, errors.New("secrets: the envelope was sealed for another group.json")
	}
	p, err := e.Open(s.dec)
	if err != nil {
		return nil, err
	}
	if err := check(p, resources); err != nil {
		return nil, err
	}
	name := filepath.Join(s.dir, e.GroupSha256+".json")
	if err := atomicfile.WriteFile(name, envelope, 0o600); err != nil {
		return nil, fmt.Errorf("secrets: store: %w", err)
	}
	return &Staged{s: s, resources: p.Resources, file: name}, nil
}

// Commit serves the staged secrets in place of the running ones and
// removes the older envelopes. Call it once the group they came with is
// running.
func (st *Staged) Commit() {
	if st.done {
		return
	}
	st.done = true
	s := st.s
	s.mu.Lock()
	s.resources, s.file = st.resources, st.file
	s.mu.Unlock()
	s.removeAllBut(st.file)
	n := 0
	for _, r := range st.resources {
		n += len(r.Versions)
	}
	s.log.Info("secrets deployed", "resources", len(st.resources), "versions", n)
}

// Abort drops the staged envelope; the running secrets stay.
func (st *Staged) Abort() {
	if st.done {
		return
	}
	st.done = true
	st.s.mu.RLock()
	inUse := st.s.file
	st.s.mu.RUnlock()
	if st.file != "" && st.file != inUse {
		if err := os.Remove(st.file); err != nil && !errors.Is(err, os.ErrNotExist) {
			st.s.log.Warn("could not remove a staged secrets envelope", "path", st.file, "error", err)
		}
	}
}

// Load opens, at start, the stored envelope of the running group.json
// (groupJSON) and serves its secrets. A group without secret resources
// serves none. A missing or unreadable envelope serves none and is an
// error naming why (the caller logs it: devices are served regardless).
func (s *Store) Load(groupID string, groupJSON []byte, resources []config.SecretResource) error {
	if len(resources) == 0 {
		s.mu.Lock()
		s.resources, s.file = nil, ""
		s.mu.Unlock()
		return nil
	}
	name := filepath.Join(s.dir, GroupHash(groupJSON)+".json")
	data, err := readBounded(name)
	if err != nil {
		return fmt.Errorf("secrets: the group has %d secret resources but their envelope cannot be read (the group.json was not deployed by the control plane, or was edited): %w",
			len(resources), err)
	}
	e, err := ParseEnvelope(data)
	if err != nil {
		return fmt.Errorf("secrets: %s: %w", name, err)
	}
	if e.GroupId != groupID || e.GroupSha256 != GroupHash(groupJSON) {
		return fmt.Errorf("secrets: %s is not the running group's", name)
	}
	p, err := e.Open(s.dec)
	if err != nil {
		return fmt.Errorf("secrets: %s: %w", name, err)
	}
	if err := check(p, resources); err != nil {
		return fmt.Errorf("secrets: %s: %w", name, err)
	}
	s.mu.Lock()
	s.resources, s.file = p.Resources, name
	s.mu.Unlock()
	s.log.Info("secrets loaded", "resources", len(p.Resources), "deployment", e.DeploymentId)
	return nil
}

func readBounded(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(io.LimitReader(f, MaxEnvelope+1)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// check compares a payload with the group's secret resources.
func check(p Payload, resources []config.SecretResource) error {
	if len(p.Resources) != len(resources) {
		return fmt.Errorf("secrets: the deployment carries %d secret resources, the group has %d", len(p.Resources), len(resources))
	}
	for _, want := range resources {
		i := slices.IndexFunc(p.Resources, func(r Resource) bool { return r.ResourceId == want.Id })
		if i < 0 {
			return fmt.Errorf("secrets: resource %s: not in the deployment's secrets", want.Id)
		}
		r := p.Resources[i]
		if r.ARN != want.ARN {
			return fmt.Errorf("secrets: resource %s: the deployment carries secret %s, the group names %s", want.Id, r.ARN, want.ARN)
		}
		seen := map[string]bool{}
		for _, v := range r.Versions {
			if (v.SecretString == nil) == (v.SecretBinary == nil) {
				return fmt.Errorf("secrets: resource %s: version %s: want exactly one of SecretString and SecretBinary", want.Id, v.VersionId)
			}
			if v.VersionId == "" {
				return fmt.Errorf("secrets: resource %s: a version has no VersionId", want.Id)
			}
			for _, l := range v.VersionStages {
				if seen[l] {
					return fmt.Errorf("secrets: resource %s: staging label %s is on two versions", want.Id, l)
				}
				seen[l] = true
			}
		}
		for _, l := range want.Labels() {
			if !seen[l] {
				return fmt.Errorf("secrets: resource %s (%s): no version with staging label %s", want.Id, want.ARN, l)
			}
		}
	}
	return nil
}

// Get returns one version of a secret: secretID is its ARN or name;
// versionID and versionStage pick the version (both empty: AWSCURRENT;
// both given: they must agree). An unknown secret or version is
// ErrNotFound, wrapped with what was asked.
func (s *Store) Get(secretID, versionID, versionStage string) (Secret, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.find(secretID)
	if !ok {
		return Secret{}, fmt.Errorf("secrets: %s: %w", secretID, ErrNotFound)
	}
	return version(r, versionID, versionStage)
}

func (s *Store) find(secretID string) (Resource, bool) {
	for _, r := range s.resources {
		if r.ARN == secretID || r.Name == secretID {
			return r, true
		}
	}
	return Resource{}, false
}

func version(r Resource, versionID, versionStage string) (Secret, error) {
	if versionID == "" && versionStage == "" {
		versionStage = config.StageCurrent
	}
	for _, v := range r.Versions {
		if versionID != "" && v.VersionId != versionID || versionStage != "" && !slices.Contains(v.VersionStages, versionStage) {
			continue
		}
		return Secret{
			ResourceID: r.ResourceId, ARN: r.ARN, Name: r.Name, VersionID: v.VersionId,
			VersionStages: slices.Clone(v.VersionStages), SecretString: cloneString(v.SecretString),
			SecretBinary: bytes.Clone(v.SecretBinary), CreatedDate: v.CreatedDate,
		}, nil
	}
	var asked []string
	if versionID != "" {
		asked = append(asked, "version "+versionID)
	}
	if versionStage != "" {
		asked = append(asked, "staging label "+versionStage)
	}
	return Secret{}, fmt.Errorf("secrets: %s: %s: %w", r.ARN, strings.Join(asked, " with "), ErrNotFound)
}

func cloneString(p *string) *string {
	if p == nil {
		return nil
	}
	s := strings.Clone(*p)
	return &s
}

// Read is Get for a caller (a function) allowed the resources whose Ids
// are in allowed (its ResourceAccessPolicies): a secret of another
// resource is ErrDenied. Every read is logged, with the caller, the
// secret and the outcome, never the value.
func (s *Store) Read(caller string, allowed []string, secretID, versionID, versionStage string) (Secret, error) {
	s.mu.RLock()
	r, ok := s.find(secretID)
	s.mu.RUnlock()
	log := s.log.With("caller", caller, "secret", secretID, "version_id", versionID, "version_stage", versionStage)
	if !ok {
		err := fmt.Errorf("secrets: %s: %w", secretID, ErrNotFound)
		log.Warn("secret read refused", "reason", "no such secret")
		return Secret{}, err
	}
	if !slices.Contains(allowed, r.ResourceId) {
		log.Warn("secret read refused", "resource", r.ResourceId, "reason", "no ResourceAccessPolicies entry for the resource")
		return Secret{}, fmt.Errorf("secrets: %s may not read %s (resource %s): %w", caller, r.ARN, r.ResourceId, ErrDenied)
	}
	sec, err := version(r, versionID, versionStage)
	if err != nil {
		log.Warn("secret read refused", "resource", r.ResourceId, "reason", "no such version")
		return Secret{}, err
	}
	log.Info("secret read", "resource", r.ResourceId, "arn", r.ARN, "version", sec.VersionID)
	return sec, nil
}

// removeAllBut removes every envelope in the directory except keep.
func (s *Store) removeAllBut(keep string) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(s.dir, e.Name())
		if p == keep || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if err := os.Remove(p); err != nil {
			s.log.Warn("could not remove an old secrets envelope", "path", p, "error", err)
		}
	}
}
