package dcm

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// groupCA signs requests like the control plane does, for a validity it
// is given; while down it answers an error.
type groupCA struct {
	ca       *pki.CA
	validity atomic.Int64 // nanoseconds
	down     atomic.Bool
	calls    atomic.Int32
	// wrongKey makes it sign another key than the request's.
	wrongKey atomic.Bool
}

func newGroupCA(t *testing.T, validity time.Duration) *groupCA {
	t.Helper()
	ca, err := pki.NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g := &groupCA{ca: ca}
	g.validity.Store(int64(validity))
	return g
}

func (g *groupCA) CreateCertificate(_ context.Context, der []byte) (*controlplane.Certificate, error) {
	g.calls.Add(1)
	if g.down.Load() {
		return nil, errors.New("connection refused")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, err
	}
	if g.wrongKey.Load() {
		other, _ := keyspec.ECP256.Generate()
		csr.PublicKey = other.Public()
		cert, err := g.ca.Issue(other.Public(), pki.Leaf{CommonName: "x", Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
		return &controlplane.Certificate{Leaf: cert, GroupCA: g.ca.Cert}, err
	}
	notAfter := time.Now().Add(time.Duration(g.validity.Load()))
	cert, err := g.ca.Issue(csr.PublicKey, pki.Leaf{CommonName: csr.Subject.CommonName, IPs: csr.IPAddresses,
		DNSNames: csr.DNSNames, Usage: pki.ServerAuth, NotBefore: time.Now().Add(-time.Second), NotAfter: notAfter})
	if err != nil {
		return nil, err
	}
	return &controlplane.Certificate{Leaf: cert, GroupCA: g.ca.Cert, ExpiresAt: notAfter}, nil
}

type fixture struct {
	dir      string
	ca       *groupCA
	store    *keys.Store
	rotated  atomic.Int32
	mu       sync.Mutex
	managers []context.CancelFunc
}

func newFixture(t *testing.T, validity time.Duration) *fixture {
	f := &fixture{dir: t.TempDir(), ca: newGroupCA(t, validity), store: keys.NewStore(keys.StoreOptions{})}
	t.Cleanup(func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.managers {
			c()
		}
		f.store.Close()
	})
	return f
}

func (f *fixture) manager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Options{
		Dir:        f.dir,
		Keys:       StoreKeys{Store: f.store, Kind: keyspec.File, Dir: f.dir, Type: keyspec.ECP256},
		Issuer:     f.ca,
		CommonName: "gw",
		Names:      func() []string { return []string{"127.0.0.1", "gw.local"} },
		OnRotate:   func() { f.rotated.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) run(m *Manager) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	f.mu.Lock()
	f.managers = append(f.managers, stop)
	f.mu.Unlock()
	return stop
}

// waitFor polls cond for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFirstRunGetsCertificateAndRestartReusesIt(t *testing.T) {
	f := newFixture(t, time.Hour)
	m := f.manager(t)
	if _, err := m.GetCertificate(nil); err == nil || !strings.Contains(err.Error(), "no MQTT server certificate yet") {
		t.Fatalf("before the first certificate: %v, want a refusal", err)
	}
	stop := f.run(m)
	waitFor(t, 5*time.Second, "no certificate", func() bool { return m.Certificate() != nil })
	stop()
	leaf := m.Certificate()
	if leaf.Subject.CommonName != "gw" || !m.Covers([]string{"127.0.0.1", "gw.local"}) || m.Covers([]string{"10.0.0.1"}) {
		t.Errorf("certificate names: CN %q, DNS %v, IPs %v", leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses)
	}
	if f.rotated.Load() != 0 {
		t.Error("OnRotate ran for the first certificate")
	}
	if _, err := os.Stat(filepath.Join(f.dir, stateFile)); err != nil {
		t.Fatal(err)
	}

	calls := f.ca.calls.Load()
	again := f.manager(t)
	stop = f.run(again)
	time.Sleep(200 * time.Millisecond)
	stop()
	if got := again.Certificate(); got == nil || !got.Equal(leaf) {
		t.Fatal("a restart did not serve the recorded certificate")
	}
	if f.ca.calls.Load() != calls {
		t.Error("a restart with a valid certificate asked the control plane again")
	}
	tc, err := again.GetCertificate(nil)
	if err != nil || tc.PrivateKey == nil {
		t.Fatalf("GetCertificate after restart: %v", err)
	}
}

func TestRenewsAheadOfExpiryAndRemovesOldKey(t *testing.T) {
	f := newFixture(t, 2*time.Second)
	m := f.manager(t)
	f.run(m)
	waitFor(t, 5*time.Second, "no certificate", func() bool { return m.Certificate() != nil })
	first := m.Certificate()
	firstKeys, _ := filepath.Glob(filepath.Join(f.dir, "*.key.pem"))
	waitFor(t, 5*time.Second, "not renewed", func() bool { return !m.Certificate().Equal(first) })
	if f.rotated.Load() == 0 {
		t.Error("OnRotate did not run")
	}
	if time.Now().After(first.NotAfter) {
		t.Error("renewed only after expiry")
	}
	for _, k := range firstKeys {
		waitFor(t, time.Second, "old key kept: "+k, func() bool { _, err := os.Stat(k); return os.IsNotExist(err) })
	}
}

func TestOfflineAtExpiryRefusesThenRecovers(t *testing.T) {
	f := newFixture(t, 1500*time.Millisecond)
	m := f.manager(t)
	f.run(m)
	waitFor(t, 5*time.Second, "no certificate", func() bool { return m.Certificate() != nil })
	f.ca.down.Store(true)
	first := m.Certificate()
	waitFor(t, 5*time.Second, "expired certificate still served", func() bool {
		_, err := m.GetCertificate(nil)
		return err != nil && strings.Contains(err.Error(), "expired")
	})
	if !m.Certificate().Equal(first) {
		t.Fatal("a certificate arrived while the control plane was down")
	}
	calls := f.ca.calls.Load()
	waitFor(t, 5*time.Second, "no retries after expiry", func() bool { return f.ca.calls.Load() >= calls+2 })
	f.ca.down.Store(false)
	waitFor(t, 5*time.Second, "no renewal after the control plane came back", func() bool {
		_, err := m.GetCertificate(nil)
		return err == nil
	})
	if keys, _ := filepath.Glob(filepath.Join(f.dir, "*.key.pem")); len(keys) != 1 {
		t.Errorf("key files after retries: %v, want only the served one", keys)
	}
}

func TestRefusesCertificateForAnotherKey(t *testing.T) {
	f := newFixture(t, time.Hour)
	f.ca.wrongKey.Store(true)
	m := f.manager(t)
	f.run(m)
	waitFor(t, 5*time.Second, "no attempt", func() bool { return f.ca.calls.Load() >= 1 })
	time.Sleep(100 * time.Millisecond)
	if m.Certificate() != nil {
		t.Fatal("served a certificate for another key")
	}
}

func TestCorruptStateIsReplaced(t *testing.T) {
	f := newFixture(t, time.Hour)
	if err := os.WriteFile(filepath.Join(f.dir, stateFile), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	m := f.manager(t)
	if m.Certificate() != nil {
		t.Fatal("served from a corrupt record")
	}
	f.run(m)
	waitFor(t, 5*time.Second, "no certificate", func() bool { return m.Certificate() != nil })
}

func TestRenewOnRequest(t *testing.T) {
	f := newFixture(t, time.Hour)
	m := f.manager(t)
	f.run(m)
	waitFor(t, 5*time.Second, "no certificate", func() bool { return m.Certificate() != nil })
	first := m.Certificate()
	m.Renew()
	waitFor(t, 5*time.Second, "Renew did not renew", func() bool { return !m.Certificate().Equal(first) })
}
