package store

import (
	"fmt"
	"regexp"

	bolt "go.etcd.io/bbolt"
)

// Thing is a registered thing (a core or a device).
type Thing struct {
	Name string `json:"name"`
	ARN  string `json:"arn"`
}

// thingName is v1's pattern for thing names.
var thingName = regexp.MustCompile(`^[a-zA-Z0-9:_-]{1,128}$`)

// checkThingName reports a name that is not a thing name.
func checkThingName(name string) error {
	if !thingName.MatchString(name) {
		return fmt.Errorf("store: thing name %q: want 1-128 characters [a-zA-Z0-9:_-]", name)
	}
	return nil
}

// CreateThing registers a thing; ErrExists if the name is taken.
func (s *Store) CreateThing(t Thing) error {
	if err := checkThingName(t.Name); err != nil {
		return err
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

// Things lists the registered things in name order.
func (s *Store) Things() ([]Thing, error) {
	var things []Thing
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		things, err = list[Thing](tx.Bucket(bThings))
		return err
	})
	return things, err
}

// thingExists reports a thing that is not registered.
func thingExists(tx *bolt.Tx, name string) bool {
	return tx.Bucket(bThings).Get([]byte(name)) != nil
}
