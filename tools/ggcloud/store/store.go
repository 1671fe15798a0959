// Package store keeps ggcloud's state in one bbolt file under its data
// directory: things, their certificates, AWS IoT policies and which
// certificates they are attached to, and each core's connectivity
// information. Every change is one transaction: a refused change leaves
// the store as it was. The store survives restarts.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/tools/ggcloud/policy"
)

// Errors callers tell apart with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
)

// Bucket names.
var (
	bThings       = []byte("things")       // thing name -> Thing
	bCertificates = []byte("certificates") // certificate ID -> Certificate
	bPolicies     = []byte("policies")     // policy name -> document JSON
	bConnectivity = []byte("connectivity") // thing name -> []Endpoint
	bGroups       = []byte("groups")       // group ID -> Group
)

// Thing is a registered thing (a core or a device).
type Thing struct {
	Name string `json:"name"`
	ARN  string `json:"arn"`
}

// Certificate is a registered certificate, the thing it belongs to and
// the policies attached to it.
type Certificate struct {
	ID       string   `json:"id"` // lowercase hex SHA-256 of the DER
	PEM      string   `json:"pem"`
	Thing    string   `json:"thing"`
	Policies []string `json:"policies"`
}

// Endpoint is one entry of a core's connectivity information, with v1's
// field names.
type Endpoint struct {
	Id          string `json:"Id"`
	HostAddress string `json:"HostAddress"`
	PortNumber  int    `json:"PortNumber"`
	Metadata    string `json:"Metadata"`
}

// Group is a Greengrass group as discovery sees it: its core, its
// devices and its group CA certificates (PEM).
type Group struct {
	ID      string   `json:"id"`
	Core    string   `json:"core"`    // the core's thing name
	Devices []string `json:"devices"` // thing names
	CAs     []string `json:"cas"`     // PEM certificates devices trust the core's server certificate by
	// CAKey is the group CA's private key (PEM) that signs the core's
	// MQTT server certificates; it never leaves ggcloud.
	CAKey string `json:"caKey,omitempty"`
	// CertificateExpiryMs is the validity of the MQTT server
	// certificates ggcloud signs (v1's CertificateExpiryInMilliseconds).
	CertificateExpiryMs int64 `json:"certificateExpiryMs,omitempty"`
}

// Store is an open state file. It is safe for concurrent use.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the store in dir, mode 0700, file 0600.
// A second ggcloud on the same directory waits up to 5 s, then fails.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	path := filepath.Join(dir, "ggcloud.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store: %s is in use by another ggcloud", path)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bThings, bCertificates, bPolicies, bConnectivity, bGroups} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error { return s.db.Close() }

// thingName is v1's pattern for thing names.
var thingName = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// certificateID is a lowercase hex SHA-256.
var certificateID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// CreateThing registers a thing; ErrExists if the name is taken.
func (s *Store) CreateThing(t Thing) error {
	if !thingName.MatchString(t.Name) {
		return fmt.Errorf("store: thing name %q: want 1-128 characters [a-zA-Z0-9:_-]", t.Name)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bThings)
		if b.Get([]byte(t.Name)) != nil {
			return fmt.Errorf("store: thing %s: %w", t.Name, ErrExists)
		}
		return put(b, t.Name, t)
	})
}

// Thing returns a registered thing.
func (s *Store) Thing(name string) (Thing, error) {
	var t Thing
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bThings), "thing", name, &t) })
	return t, err
}

// RegisterCertificate records a certificate for a registered thing.
func (s *Store) RegisterCertificate(c Certificate) error {
	if !certificateID.MatchString(c.ID) {
		return fmt.Errorf("store: certificate ID %q: want 64 lowercase hex digits (SHA-256 of the DER)", c.ID)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bThings).Get([]byte(c.Thing)) == nil {
			return fmt.Errorf("store: certificate %s: thing %s: %w", c.ID, c.Thing, ErrNotFound)
		}
		b := tx.Bucket(bCertificates)
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("store: certificate %s: %w", c.ID, ErrExists)
		}
		c.Policies = nil
		return put(b, c.ID, c)
	})
}

// Certificate returns a registered certificate.
func (s *Store) Certificate(id string) (Certificate, error) {
	var c Certificate
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bCertificates), "certificate", id, &c) })
	return c, err
}

// PutPolicy stores a policy document under name, replacing an older
// version; the document must parse.
func (s *Store) PutPolicy(name string, doc []byte) error {
	if _, err := policy.Parse(name, doc); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPolicies).Put([]byte(name), doc) })
}

// AttachPolicy attaches a stored policy to a registered certificate.
func (s *Store) AttachPolicy(name, certID string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bPolicies).Get([]byte(name)) == nil {
			return fmt.Errorf("store: policy %s: %w", name, ErrNotFound)
		}
		b := tx.Bucket(bCertificates)
		var c Certificate
		if err := get(b, "certificate", certID, &c); err != nil {
			return err
		}
		if !slices.Contains(c.Policies, name) {
			c.Policies = append(c.Policies, name)
		}
		return put(b, certID, c)
	})
}

// Caller is who made a call: the thing of its certificate and the
// policies attached to the certificate.
type Caller struct {
	Thing    Thing
	Policies []*policy.Document
}

// CallerOf looks up a client certificate by ID: an unregistered
// certificate is ErrNotFound.
func (s *Store) CallerOf(certID string) (Caller, error) {
	var c Caller
	err := s.db.View(func(tx *bolt.Tx) error {
		var cert Certificate
		if err := get(tx.Bucket(bCertificates), "certificate", certID, &cert); err != nil {
			return err
		}
		if err := get(tx.Bucket(bThings), "thing", cert.Thing, &c.Thing); err != nil {
			return err
		}
		for _, name := range cert.Policies {
			doc, err := policy.Parse(name, tx.Bucket(bPolicies).Get([]byte(name)))
			if err != nil {
				return fmt.Errorf("store: %w", err)
			}
			c.Policies = append(c.Policies, doc)
		}
		return nil
	})
	return c, err
}

// SetConnectivity replaces a thing's connectivity information.
func (s *Store) SetConnectivity(thing string, eps []Endpoint) error {
	for i, e := range eps {
		if e.HostAddress == "" || e.PortNumber < 1 || e.PortNumber > 65535 {
			return fmt.Errorf("store: connectivity of %s: ConnectivityInfo[%d]: want a HostAddress and a PortNumber 1-65535", thing, i)
		}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bThings).Get([]byte(thing)) == nil {
			return fmt.Errorf("store: connectivity: thing %s: %w", thing, ErrNotFound)
		}
		return put(tx.Bucket(bConnectivity), thing, eps)
	})
}

// Connectivity returns a thing's connectivity information (empty if none
// was reported).
func (s *Store) Connectivity(thing string) ([]Endpoint, error) {
	eps := []Endpoint{}
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bThings).Get([]byte(thing)) == nil {
			return fmt.Errorf("store: connectivity: thing %s: %w", thing, ErrNotFound)
		}
		if v := tx.Bucket(bConnectivity).Get([]byte(thing)); v != nil {
			return json.Unmarshal(v, &eps)
		}
		return nil
	})
	return eps, err
}

// PutGroup creates or replaces a group; its core and devices must be
// registered things.
func (s *Store) PutGroup(g Group) error {
	if g.ID == "" || len(g.CAs) == 0 {
		return fmt.Errorf("store: group %q: want an ID and at least one CA", g.ID)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		things := tx.Bucket(bThings)
		for _, name := range append([]string{g.Core}, g.Devices...) {
			if things.Get([]byte(name)) == nil {
				return fmt.Errorf("store: group %s: thing %s: %w", g.ID, name, ErrNotFound)
			}
		}
		return put(tx.Bucket(bGroups), g.ID, g)
	})
}

// GroupOfCore returns the group whose core is thing.
func (s *Store) GroupOfCore(thing string) (Group, error) {
	groups, err := s.GroupsOf(thing)
	if err != nil {
		return Group{}, err
	}
	for _, g := range groups {
		if g.Core == thing {
			return g, nil
		}
	}
	return Group{}, fmt.Errorf("store: %s is the core of no group: %w", thing, ErrNotFound)
}

// GroupsOf returns the groups a thing belongs to, as core or device, in
// ID order.
func (s *Store) GroupsOf(thing string) ([]Group, error) {
	var groups []Group
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bGroups).ForEach(func(_, v []byte) error {
			var g Group
			if err := json.Unmarshal(v, &g); err != nil {
				return err
			}
			if g.Core == thing || slices.Contains(g.Devices, thing) {
				groups = append(groups, g)
			}
			return nil
		})
	})
	return groups, err
}

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
