package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/ota/release"
)

// bFirmware describes the stored releases: SHA-256 (hex) -> Firmware. The
// release files themselves are in bCodeArchives, by the same key, and are
// fetched by cores like function code.
var bFirmware = []byte("firmware")

// DefaultMaxFirmwareSize bounds a release file unless the caller says
// more.
const DefaultMaxFirmwareSize = 512 << 20

// Firmware is a stored release: what its (unverified) manifest says, and
// its SHA-256 and size, which deployments carry. ggcloud does not hold the
// release keys; the core verifies the signature before it writes anything.
type Firmware struct {
	Sha256          string             `json:"Sha256"`
	Size            int64              `json:"Size"`
	Version         string             `json:"Version"`
	SecurityVersion uint32             `json:"SecurityVersion"`
	Compatible      release.Compatible `json:"Compatible"`
	StoredAt        time.Time          `json:"StoredAt"`
}

// PutFirmware stores a release file (at most max bytes; max <= 0 means
// DefaultMaxFirmwareSize) by its SHA-256. A file that is not a
// well-formed release, or whose size is not its header's and parts', is
// refused.
func (s *Store) PutFirmware(data []byte, max int64) (Firmware, error) {
	if max <= 0 {
		max = DefaultMaxFirmwareSize
	}
	if int64(len(data)) > max {
		return Firmware{}, fmt.Errorf("store: firmware: %d bytes: more than the %d allowed", len(data), max)
	}
	h, err := release.ReadUnverifiedHeader(bytes.NewReader(data))
	if err != nil {
		return Firmware{}, fmt.Errorf("store: firmware: %w", err)
	}
	if want := h.Size + h.PayloadSize(); want != int64(len(data)) {
		return Firmware{}, fmt.Errorf("store: firmware: %w: the file has %d bytes, its header says %d", release.ErrMalformed, len(data), want)
	}
	if err := h.VerifyPayload(bytes.NewReader(data[h.Size:])); err != nil {
		return Firmware{}, fmt.Errorf("store: firmware: %w", err)
	}
	sum := sha256.Sum256(data)
	fw := Firmware{Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Version: h.Manifest.Version,
		SecurityVersion: h.Manifest.SecurityVersion, Compatible: h.Manifest.Compatible, StoredAt: time.Now().UTC()}
	err = s.db.Update(func(tx *bolt.Tx) error {
		archives, err := tx.CreateBucketIfNotExists(bCodeArchives)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bFirmware)
		if err != nil {
			return err
		}
		if err := archives.Put([]byte(fw.Sha256), data); err != nil {
			return err
		}
		return put(meta, fw.Sha256, fw)
	})
	return fw, err
}

// Firmwares lists the stored releases.
func (s *Store) Firmwares() ([]Firmware, error) {
	out := []Firmware{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFirmware)
		if b == nil {
			return nil
		}
		var err error
		out, err = list[Firmware](b)
		return err
	})
	return out, err
}

// DeployFirmware deploys the group as Deploy does, its document carrying
// the stored release sha256 as "Firmware": the core installs it into its
// inactive slot and reboots to try it.
func (s *Store) DeployFirmware(groupID, sha256 string) (string, error) {
	var fw Firmware
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bFirmware)
		if b == nil {
			return fmt.Errorf("store: firmware %s: %w", sha256, ErrNotFound)
		}
		return get(b, "firmware", sha256, &fw)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return "", fmt.Errorf("store: deploy group %s: %w", groupID, err)
		}
		return "", err
	}
	return s.deploy(groupID, &config.Firmware{Sha256: fw.Sha256, Size: fw.Size})
}
