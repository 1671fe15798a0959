package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// reindex rebuilds the index buckets from the primary ones: a file
// written before the indexes existed gets them on first Open.
func reindex(tx *bolt.Tx) error {
	for _, name := range [][]byte{bThingCerts, bMembers} {
		if err := tx.DeleteBucket(name); err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
	}
	thingCerts, members := tx.Bucket(bThingCerts), tx.Bucket(bMembers)
	err := tx.Bucket(bCertificates).ForEach(func(k, v []byte) error {
		var c Certificate
		if err := json.Unmarshal(v, &c); err != nil {
			return fmt.Errorf("certificate %s: %w", k, err)
		}
		return thingCerts.Put([]byte(c.Thing+"/"+c.ID), []byte{})
	})
	if err != nil {
		return fmt.Errorf("reindex: %w", err)
	}
	err = tx.Bucket(bGroups).ForEach(func(k, v []byte) error {
		var g Group
		if err := json.Unmarshal(v, &g); err != nil {
			return fmt.Errorf("group %s: %w", k, err)
		}
		if err := members.Put([]byte(g.Core+"/"+g.ID), []byte(roleCore)); err != nil {
			return err
		}
		for _, d := range g.Devices {
			if err := members.Put([]byte(d+"/"+g.ID), []byte(roleDevice)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reindex: %w", err)
	}
	return nil
}
