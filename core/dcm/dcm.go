// Package dcm is the device certificate manager: it owns the MQTT server
// certificate when config.json names no MQTTServerCertificate key
// (docs/design.md "DCM"). It makes a fresh server key in the configured key
// store, sends a certificate request to the control plane
// (CreateCertificate), serves what the group CA signs, and renews it on
// first run, ahead of expiry and when asked (connectivity changed).
//
// Offline at expiry, the expired certificate is no longer served, so new
// connections are refused while existing ones carry on, and renewal is
// retried with backoff until the control plane answers. A rotation swaps
// the certificate for the next handshake without touching connected
// clients; Options.OnRotate lets the caller disconnect them as v1 did.
//
// State lives in one directory: state.json (the key reference, the
// certificate and when it arrived), written atomically, and the key
// files the key source makes there.
package dcm

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// Issuer signs certificate requests: the control plane's CreateCertificate.
type Issuer interface {
	CreateCertificate(ctx context.Context, csrDER []byte) (*controlplane.Certificate, error)
}

// KeySource makes and forgets MQTT server keys.
type KeySource interface {
	// New makes a fresh signing key and returns it with the reference
	// that opens it again after a restart.
	New() (key crypto.Signer, ref string, err error)
	// Open opens a key New made.
	Open(ref string) (crypto.Signer, error)
	// Remove deletes a key New made.
	Remove(ref string) error
}

// Options configure a Manager.
type Options struct {
	// Dir holds state.json; it is created mode 0700.
	Dir string
	// Keys makes the server keys; Issuer signs their requests.
	Keys   KeySource
	Issuer Issuer
	// CommonName is the subject of the requests: the core's thing name.
	CommonName string
	// Names returns the addresses and host names devices reach the core
	// by; they go into each request as subject alternative names.
	Names func() []string
	// OnRotate runs after a renewed certificate replaced a served one.
	OnRotate func()
	// Log receives the manager's lines; nil means slog.Default().
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Manager serves and renews the MQTT server certificate.
type Manager struct {
	o       Options
	log     *slog.Logger
	current atomic.Pointer[served]
	renew   chan struct{}
	// pending is a key made for a request that has not been answered
	// yet; retries reuse it instead of making another. Only Run uses it.
	pending *pendingKey
}

// served is the certificate being served and what state.json records.
type served struct {
	cert       *tls.Certificate
	keyRef     string
	receivedAt time.Time
}

type pendingKey struct {
	key crypto.Signer
	ref string
}

// New loads the certificate state.json records, if any; a record that
// cannot be used (unreadable, a missing key, a key that does not match)
// is logged and replaced at the first renewal.
func New(o Options) (*Manager, error) {
	if o.Keys == nil || o.Issuer == nil || o.Dir == "" {
		return nil, errors.New("dcm: a state directory, a key source and an issuer are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Names == nil {
		o.Names = func() []string { return nil }
	}
	m := &Manager{o: o, log: o.Log, renew: make(chan struct{}, 1)}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("component", "dcm")
	s, err := loadState(o.Dir, o.Keys)
	switch {
	case err == nil && s != nil:
		m.current.Store(s)
		m.log.Info("MQTT server certificate loaded", "not_after", s.cert.Leaf.NotAfter, "key", s.keyRef)
	case err != nil:
		m.log.Warn("MQTT server certificate state unusable; a new certificate will be requested", "dir", o.Dir, "error", err)
	}
	return m, nil
}

// Certificate returns the certificate being served, or nil before the
// first one arrived.
func (m *Manager) Certificate() *x509.Certificate {
	if s := m.current.Load(); s != nil {
		return s.cert.Leaf
	}
	return nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// or an error (refusing the handshake) when there is none yet or it has
// expired.
func (m *Manager) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s := m.current.Load()
	if s == nil {
		return nil, errors.New("dcm: no MQTT server certificate yet; waiting for the control plane")
	}
	if m.o.Now().After(s.cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("dcm: the MQTT server certificate expired at %s; waiting for the control plane to renew it",
			s.cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return s.cert, nil
}

// Renew asks Run to renew now (for instance after the core's addresses
// changed). It does not wait.
func (m *Manager) Renew() {
	select {
	case m.renew <- struct{}{}:
	default:
	}
}

// Covers reports whether the served certificate names every one of
// names (IP addresses or DNS names).
func (m *Manager) Covers(names []string) bool {
	leaf := m.Certificate()
	if leaf == nil {
		return false
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
				return false
			}
		} else if !slices.Contains(leaf.DNSNames, n) {
			return false
		}
	}
	return true
}

// Run renews the certificate until ctx ends: at once when there is none,
// at three quarters of its lifetime, and on Renew. A failed renewal is
// retried with exponential backoff (1 s, doubling, capped at a tenth of
// the certificate's lifetime and at 5 min), sooner on Renew.
func (m *Manager) Run(ctx context.Context) {
	defer m.dropPending()
	var failures int
	for {
		wait := m.untilRenewal()
		if failures > 0 {
			wait = m.backoff(failures)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-m.renew:
			timer.Stop()
		}
		if err := m.rotate(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			lvl := slog.LevelWarn
			if s := m.current.Load(); s == nil || m.o.Now().After(s.cert.Leaf.NotAfter) {
				lvl = slog.LevelError
			}
			m.log.Log(ctx, lvl, "MQTT server certificate renewal failed; retrying",
				"attempt", failures, "retry_in", m.backoff(failures).Round(time.Millisecond), "error", err)
			continue
		}
		failures = 0
	}
}

// untilRenewal is how long until the served certificate is due for
// renewal: three quarters of the way from its arrival to its expiry.
func (m *Manager) untilRenewal() time.Duration {
	s := m.current.Load()
	if s == nil {
		return 0
	}
	life := s.cert.Leaf.NotAfter.Sub(s.receivedAt)
	return max(0, s.receivedAt.Add(life*3/4).Sub(m.o.Now()))
}

// backoff is the wait before retry n (n >= 1), with a tenth of jitter.
func (m *Manager) backoff(n int) time.Duration {
	ceiling := 5 * time.Minute
	if s := m.current.Load(); s != nil {
		ceiling = min(ceiling, max(time.Second, s.cert.Leaf.NotAfter.Sub(s.receivedAt)/10))
	}
	d := min(ceiling, time.Second<<min(n-1, 20))
	return d + mrand.N(d/10+1)
}

// rotate gets a certificate for a fresh key and serves it.
func (m *Manager) rotate(ctx context.Context) error {
	start := m.o.Now()
	if m.pending == nil {
		key, ref, err := m.o.Keys.New()
		if err != nil {
			return fmt.Errorf("dcm: make the server key: %w", err)
		}
		m.pending = &pendingKey{key: key, ref: ref}
	}
	key := m.pending.key
	csr, err := m.request(key)
	if err != nil {
		return err
	}
	issued, err := m.o.Issuer.CreateCertificate(ctx, csr)
	if err != nil {
		return err
	}
	cert, err := tlsconf.Certificate(key, []*x509.Certificate{issued.Leaf})
	if err != nil {
		return fmt.Errorf("dcm: the issued certificate and the key that was sent: %w", err)
	}
	leaf := cert.Leaf
	if !m.o.Now().Before(leaf.NotAfter) {
		return fmt.Errorf("dcm: the issued certificate expired already (%s)", leaf.NotAfter)
	}
	next := &served{
		cert:       cert,
		keyRef:     m.pending.ref,
		receivedAt: m.o.Now(),
	}
	if err := saveState(m.o.Dir, next); err != nil {
		return err
	}
	m.pending = nil
	old := m.current.Swap(next)
	m.log.Info("MQTT server certificate renewed", "not_after", leaf.NotAfter.UTC().Format(time.RFC3339),
		"names", append(leaf.DNSNames, ipStrings(leaf.IPAddresses)...), "took", m.o.Now().Sub(start).Round(time.Millisecond),
		"first", old == nil)
	if old != nil {
		if old.keyRef != next.keyRef {
			if err := m.o.Keys.Remove(old.keyRef); err != nil {
				m.log.Warn("could not remove the previous server key", "key", old.keyRef, "error", err)
			}
		}
		if m.o.OnRotate != nil {
			m.o.OnRotate()
		}
	}
	return nil
}

// request is a certificate request for key, naming the core and its
// addresses.
func (m *Manager) request(key crypto.Signer) ([]byte, error) {
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: m.o.CommonName}}
	for _, n := range m.o.Names() {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("dcm: sign csr: %w", err)
	}
	return der, nil
}

// dropPending removes a key made for a request that was never answered.
func (m *Manager) dropPending() {
	if m.pending == nil {
		return
	}
	if err := m.o.Keys.Remove(m.pending.ref); err != nil {
		m.log.Warn("could not remove an unused server key", "key", m.pending.ref, "error", err)
	}
	m.pending = nil
}

func ipStrings(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return s
}
