// Package store keeps ggcloud's state in one bbolt file under its data
// directory: things, their certificates, AWS IoT policies and which
// certificates they are attached to, each core's connectivity
// information, groups with their members and subscriptions, and the
// deployments rendered from them with each core's deployment status.
//
// Every change is one transaction: a refused change leaves the store as
// it was. The store survives restarts.
//
// The store also keeps the region and account that its ARNs are rendered
// with (see Identity): they are fixed by the first change that writes an
// ARN (a deployment, a subscription) or by the first UseIdentity, so that
// every command on one data directory renders the same ARNs.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/ggcore/ggcore/internal/boltcheck"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict is a change that contradicts what the store holds, such
	// as a region other than the one its ARNs were rendered with.
	ErrConflict = errors.New("conflict")
)

// Bucket names. The primary buckets hold JSON values; the index buckets
// (thingCertificates, members) are rebuilt from them when the schema
// changes.
var (
	bThings       = []byte("things")       // thing name -> Thing
	bCertificates = []byte("certificates") // certificate ID -> Certificate
	bPolicies     = []byte("policies")     // policy name -> document JSON
	bConnectivity = []byte("connectivity") // thing name -> []Endpoint
	bGroups       = []byte("groups")       // group ID -> Group
	bMeta         = []byte("meta")         // "schema", "identity"
	// bThingCerts indexes certificates by thing: "thing/certID" -> "".
	bThingCerts = []byte("thingCertificates")
	// bMembers indexes group membership: "thing/groupID" -> "core"|"device".
	bMembers = []byte("members")
	// bDeployments holds one bucket per group: deployment ID -> Deployment.
	bDeployments = []byte("deployments")
	// bDocuments holds each deployment's group.json: "groupID/deploymentID" -> bytes.
	bDocuments = []byte("documents")
	// bCurrent is each group's current deployment: group ID -> deployment ID.
	bCurrent = []byte("current")
	// bStatus is each core's deployment status:
	// "groupID/deploymentID/coreThing" -> CoreStatus.
	bStatus = []byte("status")
)

var allBuckets = [][]byte{
	bThings, bCertificates, bPolicies, bConnectivity, bGroups, bMeta,
	bThingCerts, bMembers, bDeployments, bDocuments, bCurrent, bStatus,
	bSecrets, bSecretsKeys, bEnvelopes,
}

// schema is the layout version of the file; Open rebuilds the indexes of
// a file with another version.
const schema = "2"

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Open opens (creating if needed) the store in dir, mode 0700, file 0600.
// An existing dir open to others is made 0700: it holds the state and
// the admin socket. A second ggcloud on the same directory waits up to
// 5 s, then fails.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("store: make the data directory private: %w", err)
		}
	}
	path := filepath.Join(dir, "ggcloud.db")
	// bbolt maps the file and follows what it finds unchecked: a damaged
	// file would crash ggcloud (SIGBUS) instead of being refused.
	if err := boltcheck.File(path, 5*time.Second); errors.Is(err, boltcheck.ErrLocked) {
		return nil, fmt.Errorf("store: %s is in use by another ggcloud", path)
	} else if err != nil {
		return nil, fmt.Errorf("store: %s is damaged (%w): restore it from a backup, or move it away to start afresh", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is in use by another ggcloud", path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if string(meta.Get([]byte("schema"))) == schema {
			return nil
		}
		if err := reindex(tx); err != nil {
			return err
		}
		return meta.Put([]byte("schema"), []byte(schema))
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return &Store{db: db, path: path}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// Path is the state file's path.
func (s *Store) Path() string { return s.path }

func put(b *bolt.Bucket, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), data)
}

func get(b *bolt.Bucket, what, key string, v any) error {
	data := b.Get([]byte(key))
	if data == nil {
		return fmt.Errorf("store: %s %s: %w", what, key, ErrNotFound)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: %s %s: %w", what, key, err)
	}
	return nil
}

// list decodes every value of b, in key order.
func list[T any](b *bolt.Bucket) ([]T, error) {
	out := []T{}
	err := b.ForEach(func(k, v []byte) error {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return fmt.Errorf("store: entry %s: %w", k, err)
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// keysWithPrefix returns the rest of every key of b that starts with
// prefix, in order.
func keysWithPrefix(b *bolt.Bucket, prefix string) []string {
	var out []string
	c := b.Cursor()
	p := []byte(prefix)
	for k, _ := c.Seek(p); k != nil && len(k) >= len(p) && string(k[:len(p)]) == prefix; k, _ = c.Next() {
		out = append(out, string(k[len(p):]))
	}
	return out
}
