package store

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/tools/ggcloud/policy"
)

// Certificate is a registered certificate, the thing it belongs to and
// the policies attached to it.
type Certificate struct {
	ID       string   `json:"id"` // lowercase hex SHA-256 of the DER
	PEM      string   `json:"pem"`
	Thing    string   `json:"thing"`
	Policies []string `json:"policies"`
}

// certificateID is a lowercase hex SHA-256.
var certificateID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// RegisterCertificate records a certificate for a registered thing.
// Registering a certificate again for the same thing changes nothing (its
// policies stay attached); for another thing it is ErrExists.
func (s *Store) RegisterCertificate(c Certificate) error {
	if !certificateID.MatchString(c.ID) {
		return fmt.Errorf("store: certificate ID %q: want 64 lowercase hex digits (SHA-256 of the DER)", c.ID)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if !thingExists(tx, c.Thing) {
			return fmt.Errorf("store: certificate %s: thing %s: %w", c.ID, c.Thing, ErrNotFound)
		}
		b := tx.Bucket(bCertificates)
		var old Certificate
		if err := get(b, "certificate", c.ID, &old); err == nil {
			if old.Thing == c.Thing {
				return nil
			}
			return fmt.Errorf("store: certificate %s is registered for thing %s, not %s: %w", c.ID, old.Thing, c.Thing, ErrExists)
		}
		c.Policies = nil
		if err := put(b, c.ID, c); err != nil {
			return err
		}
		return tx.Bucket(bThingCerts).Put([]byte(c.Thing+"/"+c.ID), []byte{})
	})
}

// Certificate returns a registered certificate.
func (s *Store) Certificate(id string) (Certificate, error) {
	var c Certificate
	err := s.db.View(func(tx *bolt.Tx) error { return get(tx.Bucket(bCertificates), "certificate", id, &c) })
	return c, err
}

// CertificatesOf lists the IDs of a thing's certificates, in order.
func (s *Store) CertificatesOf(thing string) ([]string, error) {
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		if !thingExists(tx, thing) {
			return fmt.Errorf("store: thing %s: %w", thing, ErrNotFound)
		}
		ids = keysWithPrefix(tx.Bucket(bThingCerts), thing+"/")
		return nil
	})
	return ids, err
}

// certificateOf returns the certificate a thing takes part in a group
// with: given, which must be registered for the thing, or else the
// thing's only certificate.
func certificateOf(tx *bolt.Tx, thing, given string) (string, error) {
	if given != "" {
		var c Certificate
		if err := get(tx.Bucket(bCertificates), "certificate", given, &c); err != nil {
			return "", err
		}
		if c.Thing != thing {
			return "", fmt.Errorf("store: certificate %s belongs to thing %s, not %s", given, c.Thing, thing)
		}
		return given, nil
	}
	ids := keysWithPrefix(tx.Bucket(bThingCerts), thing+"/")
	switch len(ids) {
	case 1:
		return ids[0], nil
	case 0:
		return "", fmt.Errorf("store: thing %s has no registered certificate: register one first", thing)
	}
	return "", fmt.Errorf("store: thing %s has %d certificates (%s): name the one to use", thing, len(ids), strings.Join(ids, ", "))
}

// PutPolicy stores a policy document under name, replacing an older
// version; the document must parse.
func (s *Store) PutPolicy(name string, doc []byte) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("store: policy name %q: want 1-128 characters", name)
	}
	if _, err := policy.Parse(name, doc); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bPolicies).Put([]byte(name), doc) })
}

// Policy returns a stored policy document.
func (s *Store) Policy(name string) ([]byte, error) {
	var doc []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bPolicies).Get([]byte(name))
		if v == nil {
			return fmt.Errorf("store: policy %s: %w", name, ErrNotFound)
		}
		doc = slices.Clone(v)
		return nil
	})
	return doc, err
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
		if slices.Contains(c.Policies, name) {
			return nil
		}
		c.Policies = append(c.Policies, name)
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
