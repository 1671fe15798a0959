package dcm

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// memKeys is a KeySource of keys kept in memory under their references.
type memKeys map[string]crypto.Signer

func (m memKeys) New() (crypto.Signer, string, error) { return nil, "", errors.New("not used") }
func (m memKeys) Remove(string) error                 { return nil }
func (m memKeys) Open(ref string) (crypto.Signer, error) {
	if k, ok := m[ref]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("no key %s", ref)
}

// TestStateRoundTripAndRefusals checks that a saved record serves the
// same certificate and key after a restart, and that a record that
// cannot be served is refused with its path.
func TestStateRoundTripAndRefusals(t *testing.T) {
	ca, err := pki.NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ks := memKeys{}
	for _, ref := range []string{"served", "other"} {
		if ks[ref], err = keyspec.ECP256.Generate(); err != nil {
			t.Fatal(err)
		}
	}
	leaf, err := ca.Issue(ks["served"].Public(), pki.Leaf{CommonName: "gw", DNSNames: []string{"gw.local"},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tlsconf.Certificate(ks["served"], []*x509.Certificate{leaf})
	if err != nil {
		t.Fatal(err)
	}
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	tests := []struct {
		name string
		// edit changes the saved record; nil leaves it.
		edit func(r *record)
		want string // "" when the record loads; else what the error says
		is   error
	}{
		{name: "saved record"},
		{name: "certificate of another key", edit: func(r *record) { r.KeyRef = "other" },
			want: "key other", is: tlsconf.ErrKeyMismatch},
		{name: "key gone", edit: func(r *record) { r.KeyRef = "gone" }, want: "keyRef"},
		{name: "no certificate", edit: func(r *record) { r.Certificate = "" }, want: "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := saveState(dir, &served{cert: cert, keyRef: "served", receivedAt: received}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, stateFile)
			if tt.edit != nil {
				editRecord(t, path, tt.edit)
			}
			got, err := loadState(dir, ks)
			if tt.want != "" {
				if err == nil {
					t.Fatal("loadState accepted the record")
				}
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("loadState: %v; want an error naming %s and %q", err, path, tt.want)
				}
				if tt.is != nil && !errors.Is(err, tt.is) {
					t.Errorf("loadState: %v; want it to wrap %v", err, tt.is)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadState: %v", err)
			}
			if !got.cert.Leaf.Equal(leaf) || got.cert.PrivateKey != ks["served"] || got.keyRef != "served" || !got.receivedAt.Equal(received) {
				t.Errorf("loadState = leaf %s, key ref %q, received %v; want the saved certificate, key and time",
					got.cert.Leaf.Subject.CommonName, got.keyRef, got.receivedAt)
			}
		})
	}

	t.Run("no record", func(t *testing.T) {
		got, err := loadState(t.TempDir(), ks)
		if got != nil || err != nil {
			t.Fatalf("loadState of an empty directory = %v, %v; want nothing and no error (first run)", got, err)
		}
	})
}

// editRecord applies edit to the state.json at path.
func editRecord(t *testing.T, path string, edit func(*record)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	edit(&r)
	if data, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
