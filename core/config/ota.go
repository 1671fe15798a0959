package config

import (
	"encoding/json"
	"path/filepath"
)

// DefaultReleaseKeys is where the image keeps the public keys that
// verify releases (a glob, as ggboot reads them), unless
// ggcore.ota.releaseKeys says otherwise.
const DefaultReleaseKeys = "/etc/ggcore/release-keys/*.pem"

// DefaultHealthDeadlineSeconds bounds a trial boot's health check unless
// ggcore.ota.healthDeadlineSeconds says otherwise.
const DefaultHealthDeadlineSeconds = 120

// OTA is ggcore.ota: where image updates go (docs/design.md "Firmware
// updates"). On a gateway every field may stay unset: the system disk
// and the running slot come from the kernel command line (ggcore.system=,
// ggcore.slot=), the keys from DefaultReleaseKeys.
type OTA struct {
	// SystemDisk is the system disk's block device (partitions 1 state,
	// 2 slot A, 3 slot B) or a directory holding the files state, A and B
	// (a host without a system disk, tests).
	SystemDisk string `json:"systemDisk,omitempty"`
	// Slot is the slot running, "A" or "B", for a host that did not boot
	// through ggboot (tests).
	Slot string `json:"slot,omitempty"`
	// ReleaseKeys are PEM files (or globs of them) of the public keys
	// trusted to sign releases.
	ReleaseKeys []string `json:"releaseKeys,omitempty"`
	// HealthDeadlineSeconds bounds a trial boot's health check: 10 to
	// 3600, default 120.
	HealthDeadlineSeconds int `json:"healthDeadlineSeconds,omitempty"`
}

// ota walks ggcore.ota.
func (w *walker) ota(path string, raw json.RawMessage, o *OTA) {
	abs := func(dst *string) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			if w.str(p, v, dst) && !filepath.IsAbs(*dst) {
				w.fail(p, "%s: want an absolute path", quote(*dst))
			}
		}
	}
	w.object(path, raw, []rule{
		{"systemDisk", abs(&o.SystemDisk)},
		{"slot", func(p string, v json.RawMessage) {
			if w.str(p, v, &o.Slot) && o.Slot != "A" && o.Slot != "B" {
				w.fail(p, "%s: want \"A\" or \"B\"", quote(o.Slot))
			}
		}},
		{"releaseKeys", func(p string, v json.RawMessage) {
			w.array(p, v, func(p string, v json.RawMessage) {
				var s string
				abs(&s)(p, v)
				o.ReleaseKeys = append(o.ReleaseKeys, s)
			})
		}},
		{"healthDeadlineSeconds", func(p string, v json.RawMessage) {
			w.intRange(p, v, 10, 3600, "a number of seconds from 10 to 3600", &o.HealthDeadlineSeconds)
		}},
	})
}
