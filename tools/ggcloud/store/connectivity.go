package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Endpoint is one entry of a core's connectivity information, with v1's
// field names.
type Endpoint struct {
	Id          string `json:"Id"`
	HostAddress string `json:"HostAddress"`
	PortNumber  int    `json:"PortNumber"`
	Metadata    string `json:"Metadata"`
}

// SetConnectivity replaces a thing's connectivity information.
func (s *Store) SetConnectivity(thing string, eps []Endpoint) error {
	for i, e := range eps {
		if e.HostAddress == "" || e.PortNumber < 1 || e.PortNumber > 65535 {
			return fmt.Errorf("store: connectivity of %s: ConnectivityInfo[%d]: want a HostAddress and a PortNumber 1-65535", thing, i)
		}
	}
	if eps == nil {
		eps = []Endpoint{}
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		if !thingExists(tx, thing) {
			return fmt.Errorf("store: connectivity: thing %s: %w", thing, ErrNotFound)
		}
		return put(tx.Bucket(bConnectivity), thing, eps)
	})
}

// Connectivity returns a thing's connectivity information (empty if none
// was reported).
func (s *Store) Connectivity(thing string) ([]Endpoint, error) {
	var eps []Endpoint
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		eps, err = connectivity(tx, thing)
		return err
	})
	return eps, err
}

func connectivity(tx *bolt.Tx, thing string) ([]Endpoint, error) {
	eps := []Endpoint{}
	if !thingExists(tx, thing) {
		return eps, fmt.Errorf("store: connectivity: thing %s: %w", thing, ErrNotFound)
	}
	if v := tx.Bucket(bConnectivity).Get([]byte(thing)); v != nil {
		if err := json.Unmarshal(v, &eps); err != nil {
			return eps, fmt.Errorf("store: connectivity of %s: %w", thing, err)
		}
	}
	return eps, nil
}
