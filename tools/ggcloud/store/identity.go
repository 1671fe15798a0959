package store

import (
	"encoding/json"
	"fmt"
	"regexp"

	bolt "go.etcd.io/bbolt"
)

// The identity a store renders ARNs with until one is fixed.
const (
	DefaultRegion  = "us-east-1"
	DefaultAccount = "000000000000"
)

// Identity is the AWS region and account that the store's ARNs name.
type Identity struct {
	Region  string `json:"region"`
	Account string `json:"account"`
}

// ThingARN is the ARN of a thing: arn:aws:iot:REGION:ACCOUNT:thing/NAME.
func (id Identity) ThingARN(thing string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:thing/%s", id.Region, id.Account, thing)
}

// CertificateARN is the ARN of a certificate: arn:aws:iot:REGION:ACCOUNT:cert/ID.
func (id Identity) CertificateARN(certID string) string {
	return fmt.Sprintf("arn:aws:iot:%s:%s:cert/%s", id.Region, id.Account, certID)
}

var (
	regionPattern  = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	accountPattern = regexp.MustCompile(`^[0-9]{12}$`)
)

// check reports what is wrong with an identity.
func (id Identity) check() error {
	if !regionPattern.MatchString(id.Region) {
		return fmt.Errorf("store: region %q: want a region such as us-east-1", id.Region)
	}
	if !accountPattern.MatchString(id.Account) {
		return fmt.Errorf("store: account %q: want a 12-digit account ID", id.Account)
	}
	return nil
}

var identityKey = []byte("identity")

// Identity returns the region and account the store renders ARNs with:
// the fixed ones, or DefaultRegion and DefaultAccount while none is fixed
// (fixed reports which).
func (s *Store) Identity() (id Identity, fixed bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		id, fixed, err = readIdentity(tx)
		return err
	})
	return id, fixed, err
}

// UseIdentity fixes the store's identity and returns it. Empty fields of
// want mean "whatever is fixed, else the default". A field that differs
// from the fixed identity is refused with ErrConflict: ARNs already
// rendered would no longer match.
func (s *Store) UseIdentity(want Identity) (Identity, error) {
	var got Identity
	err := s.db.Update(func(tx *bolt.Tx) error {
		have, fixed, err := readIdentity(tx)
		if err != nil {
			return err
		}
		if fixed {
			if want.Region != "" && want.Region != have.Region || want.Account != "" && want.Account != have.Account {
				return fmt.Errorf("store: this data directory renders ARNs for region %s, account %s; refusing region %s, account %s: %w",
					have.Region, have.Account, orDefault(want.Region, have.Region), orDefault(want.Account, have.Account), ErrConflict)
			}
			got = have
			return nil
		}
		got = Identity{Region: orDefault(want.Region, DefaultRegion), Account: orDefault(want.Account, DefaultAccount)}
		if err := got.check(); err != nil {
			return err
		}
		return put(tx.Bucket(bMeta), string(identityKey), got)
	})
	return got, err
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// readIdentity reads the fixed identity, or the default.
func readIdentity(tx *bolt.Tx) (Identity, bool, error) {
	v := tx.Bucket(bMeta).Get(identityKey)
	if v == nil {
		return Identity{Region: DefaultRegion, Account: DefaultAccount}, false, nil
	}
	var id Identity
	if err := json.Unmarshal(v, &id); err != nil {
		return id, false, fmt.Errorf("store: identity: %w", err)
	}
	return id, true, nil
}

// fixIdentity returns the identity, fixing the default if none is fixed:
// for changes that write ARNs.
func fixIdentity(tx *bolt.Tx) (Identity, error) {
	id, fixed, err := readIdentity(tx)
	if err != nil || fixed {
		return id, err
	}
	return id, put(tx.Bucket(bMeta), string(identityKey), id)
}
