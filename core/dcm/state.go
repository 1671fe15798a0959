package dcm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// stateFile is the record of the served certificate in Options.Dir.
const stateFile = "state.json"

// record is state.json.
type record struct {
	KeyRef      string    `json:"keyRef"`
	Certificate string    `json:"certificate"` // PEM
	ReceivedAt  time.Time `json:"receivedAt"`
}

// loadState reads state.json: nil, nil when there is none (first run).
func loadState(dir string, ks KeySource) (*served, error) {
	path := filepath.Join(dir, stateFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dcm: %w", err)
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("dcm: %s: %w", path, err)
	}
	certs, err := pki.ParseCertificates([]byte(r.Certificate))
	if err != nil {
		return nil, fmt.Errorf("dcm: %s: certificate: %w", path, err)
	}
	key, err := ks.Open(r.KeyRef)
	if err != nil {
		return nil, fmt.Errorf("dcm: %s: keyRef: %w", path, err)
	}
	tc, err := tlsconf.Certificate(key, certs)
	if err != nil {
		return nil, fmt.Errorf("dcm: %s: key %s: %w", path, r.KeyRef, err)
	}
	return &served{cert: tc, keyRef: r.KeyRef, receivedAt: r.ReceivedAt}, nil
}

// saveState replaces state.json atomically: a crash leaves the old record
// or the new one, never a torn file.
func saveState(dir string, s *served) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dcm: %w", err)
	}
	r := record{KeyRef: s.keyRef, Certificate: string(pki.EncodeCertificate(s.cert.Leaf)), ReceivedAt: s.receivedAt.UTC()}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("dcm: %w", err)
	}
	tmp, err := os.CreateTemp(dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("dcm: save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("dcm: save state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("dcm: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dcm: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		return fmt.Errorf("dcm: save state: %w", err)
	}
	return nil
}
