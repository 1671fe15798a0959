package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// fixture is a CA, a server certificate and a client certificate.
type fixture struct {
	pool   *x509.CertPool
	server tls.Certificate
	client tls.Certificate
}

func newFixture(t *testing.T, serverKeyRSA bool) fixture {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	leaf := func(cn string, usage pki.Usage, keyType keyspec.Type) tls.Certificate {
		key, err := keyType.Generate()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: cn, DNSNames: []string{"localhost"}, Usage: usage, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	serverKey := keyspec.ECP256
	if serverKeyRSA {
		serverKey = keyspec.RSA2048
	}
	return fixture{
		pool:   pool,
		server: leaf("server", pki.ServerAuth, serverKey),
		client: leaf("dev1", pki.ClientAuth, keyspec.ECP256),
	}
}

// handshake runs a client with the given version and suite against a server
// built by Server, and returns the client's handshake error.
func handshake(t *testing.T, f fixture, o ServerOptions, version, suite uint16) error {
	t.Helper()
	o.ClientCAs = f.pool
	o.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil }
	srvCfg, err := Server(o)
	if err != nil {
		t.Fatal(err)
	}
	cConn, sConn := net.Pipe()
	defer cConn.Close()
	defer sConn.Close()
	go func() {
		_ = tls.Server(sConn, srvCfg).Handshake()
		sConn.Close()
	}()
	cliCfg := &tls.Config{
		RootCAs: f.pool, ServerName: "localhost", Certificates: []tls.Certificate{f.client},
		MinVersion: version, MaxVersion: version,
	}
	if suite != 0 {
		cliCfg.CipherSuites = []uint16{suite}
	}
	return tls.Client(cConn, cliCfg).Handshake()
}

func TestServerProfiles(t *testing.T) {
	rsaServer := newFixture(t, true)
	ecServer := newFixture(t, false)
	tests := []struct {
		name     string
		f        fixture
		opts     ServerOptions
		version  uint16
		suite    uint16
		accepted bool
	}{
		{"strict TLS 1.3", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS13, 0, true},
		{"strict TLS 1.2 ECDHE-RSA-AES256-GCM", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, true},
		{"strict TLS 1.2 ECDHE-ECDSA-AES128-GCM", ecServer, ServerOptions{Profile: Strict}, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{"strict refuses TLS 1.1", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS11, 0, false},
		{"strict refuses TLS 1.0", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS10, 0, false},
		{"strict refuses RSA key exchange", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
		{"strict refuses CBC", rsaServer, ServerOptions{Profile: Strict}, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, false},
		{"compat TLS 1.1", rsaServer, ServerOptions{Profile: Compat}, tls.VersionTLS11, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, true},
		{"compat TLS 1.0 RSA key exchange", rsaServer, ServerOptions{Profile: Compat}, tls.VersionTLS10, tls.TLS_RSA_WITH_AES_128_CBC_SHA, true},
		{"compat RSA key exchange GCM", rsaServer, ServerOptions{Profile: Compat}, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, true},
		{"compat with hardware key refuses RSA key exchange", rsaServer, ServerOptions{Profile: Compat, HardwareKey: true}, tls.VersionTLS12, tls.TLS_RSA_WITH_AES_128_GCM_SHA256, false},
		{"compat with hardware key keeps ECDHE CBC", rsaServer, ServerOptions{Profile: Compat, HardwareKey: true}, tls.VersionTLS12, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(t, tt.f, tt.opts, tt.version, tt.suite)
			if tt.accepted && err != nil {
				t.Fatalf("handshake refused: %v", err)
			}
			if !tt.accepted && err == nil {
				t.Fatal("handshake accepted, want refused")
			}
		})
	}
}

func TestServerRequiresClientCertificate(t *testing.T) {
	f := newFixture(t, false)
	f.client = tls.Certificate{}
	if err := handshake(t, f, ServerOptions{Profile: Strict}, tls.VersionTLS13, 0); err == nil {
		// TLS 1.3 client sees the refusal on first read, not in Handshake;
		// the server must still not complete. Check with TLS 1.2, where
		// the client learns during the handshake.
		if err := handshake(t, f, ServerOptions{Profile: Strict}, tls.VersionTLS12, 0); err == nil {
			t.Fatal("handshake without client certificate accepted")
		}
	}
}

func TestParseProfile(t *testing.T) {
	tests := []struct {
		in   string
		want Profile
		ok   bool
	}{
		{"", Strict, true}, {"strict", Strict, true}, {"compat", Compat, true}, {"Strict", "", false}, {"legacy", "", false},
	}
	for _, tt := range tests {
		got, err := ParseProfile(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseProfile(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
