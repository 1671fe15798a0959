package controlplane

// These tests run the client against ggcloud's real API handler
// (tools/ggcloud/api over a tools/ggcloud/store in a temporary
// directory), served over mutual TLS on 127.0.0.1 as ggcloud serves it.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tools/ggcloud/api"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

const (
	region  = "us-east-1"
	account = "123456789012"
	group   = "group-1"
	week    = 7 * 24 * time.Hour
)

// reporterPolicy lets a thing report its connectivity and nothing else.
const reporterPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Action":["greengrass:UpdateConnectivityInfo","greengrass:GetConnectivityInfo"],
 "Resource":["arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"]}]}`

// cloud is ggcloud's API over a store with: core gw of group-1 (v1's
// minimal policy), core lonely with the minimal policy but no group, and
// thing reporter whose policy lacks greengrass:CreateCertificate.
type cloud struct {
	st      *store.Store
	port    int
	ca      *pki.CA // identity CA: things' and the server's certificates
	groupCA *pki.CA
	roots   *x509.CertPool // what the core verifies the control plane with
	certs   map[string]*tls.Certificate
}

// minimalPolicy is Greengrass v1's "Minimal AWS IoT Policy" filled in.
func minimalPolicy(t *testing.T, core string) []byte {
	t.Helper()
	data, err := os.ReadFile("../../tools/ggcloud/api/testdata/minimal-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.NewReplacer("region", region, "account-id", account, "core-name", core, "group-id", group).Replace(string(data)))
}

// identity issues a client certificate for thing from ca.
func identity(t *testing.T, ca *pki.CA, thing string) *tls.Certificate {
	t.Helper()
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: thing, Usage: pki.ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

func newCloud(t *testing.T) *cloud {
	t.Helper()
	ca, err := pki.NewCA("identity CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	groupCA, err := pki.NewCA("group-1 CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.UseIdentity(store.Identity{Region: region, Account: account}); err != nil {
		t.Fatal(err)
	}
	c := &cloud{st: st, ca: ca, groupCA: groupCA, roots: x509.NewCertPool(), certs: map[string]*tls.Certificate{}}
	c.roots.AddCert(ca.Cert)
	for thing, pol := range map[string][]byte{
		"gw":       minimalPolicy(t, "gw"),
		"lonely":   minimalPolicy(t, "lonely"),
		"reporter": []byte(reporterPolicy),
	} {
		id := identity(t, ca, thing)
		certID := pki.CertificateID(id.Leaf.Raw)
		steps := []error{
			st.CreateThing(store.Thing{Name: thing, ARN: "arn:aws:iot:" + region + ":" + account + ":thing/" + thing}),
			st.RegisterCertificate(store.Certificate{ID: certID, Thing: thing}),
			st.PutPolicy(thing+"-policy", pol),
			st.AttachPolicy(thing+"-policy", certID),
		}
		if err := errors.Join(steps...); err != nil {
			t.Fatal(err)
		}
		c.certs[thing] = id
	}
	caKey, err := keys.MarshalPEM(groupCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutGroup(store.Group{ID: group, Core: "gw", CAs: []string{string(pki.EncodeCertificate(groupCA.Cert))},
		CAKey: string(caKey), CertificateExpiryMs: week.Milliseconds()}); err != nil {
		t.Fatal(err)
	}

	serverKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.Issue(serverKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	handler := (&api.Server{Store: st, Region: region, Account: account, Log: slog.New(slog.DiscardHandler)}).Handler()
	c.port = serveTLS(t, handler, tls.Certificate{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey})
	return c
}

// serveTLS serves h on 127.0.0.1 as ggcloud serve does (any client
// certificate; registration decides) and returns the port.
func serveTLS(t *testing.T, h http.Handler, cert tls.Certificate) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert, Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}

// caServer is an HTTPS server on 127.0.0.1 with a certificate from its
// own CA, which also issues the clients' identities.
type caServer struct {
	ca   *pki.CA
	port int
}

// serveCA serves h as caServer.
func serveCA(t *testing.T, h http.Handler) *caServer {
	t.Helper()
	ca, err := pki.NewCA("identity CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(serverKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return &caServer{ca: ca, port: serveTLS(t, h, tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: serverKey})}
}

// client is the core "gw"'s client of s with the given timeout.
func (s *caServer) client(t *testing.T, timeout time.Duration) *Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.ca.Cert)
	return newClient(t, s.port, "gw", roots, identity(t, s.ca, "gw"), timeout)
}

// client is the core's client as ggcore makes it (tlsconf.Client), for
// thing with the given certificate.
func (c *cloud) client(t *testing.T, thing string, id *tls.Certificate) *Client {
	t.Helper()
	return newClient(t, c.port, thing, c.roots, id, 0)
}

func newClient(t *testing.T, port int, thing string, roots *x509.CertPool, id *tls.Certificate, timeout time.Duration) *Client {
	t.Helper()
	cl := New(Options{Host: "127.0.0.1", Port: port, Thing: thing, Timeout: timeout,
		TLS: tlsconf.Client(roots, "127.0.0.1", func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return id, nil })})
	t.Cleanup(cl.Close)
	return cl
}

func csrFor(t *testing.T, key crypto.Signer, dns ...string) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gw"}, DNSNames: dns}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestUpdateConnectivity(t *testing.T) {
	c := newCloud(t)
	core := c.client(t, "gw", c.certs["gw"])
	ctx := context.Background()
	tests := []struct {
		name string
		eps  []Endpoint
	}{
		{"one address", []Endpoint{{Id: "lan", HostAddress: "192.0.2.10", PortNumber: 8883}}},
		{"addresses, a host name and metadata", []Endpoint{
			{Id: "AUTOIP_eth0_0", HostAddress: "192.0.2.10", PortNumber: 8883},
			{Id: "AUTOIP_eth0_1", HostAddress: "2001:db8::1", PortNumber: 8883},
			{Id: "MANUAL_0", HostAddress: "gw.example", PortNumber: 443, Metadata: "through the NAT"},
		}},
		{"replaced by fewer", []Endpoint{{Id: "MANUAL_0", HostAddress: "gw.example", PortNumber: 8883}}},
		{"none", []Endpoint{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := core.UpdateConnectivity(ctx, tt.eps); err != nil {
				t.Fatal(err)
			}
			stored, err := c.st.Connectivity("gw")
			if err != nil {
				t.Fatal(err)
			}
			got := make([]Endpoint, len(stored))
			for i, e := range stored {
				got[i] = Endpoint(e)
			}
			if !slices.Equal(got, tt.eps) {
				t.Errorf("ggcloud stores %+v, want %+v", got, tt.eps)
			}
		})
	}

	// Refusals leave what was stored.
	if err := core.UpdateConnectivity(ctx, []Endpoint{{Id: "x", HostAddress: "192.0.2.99", PortNumber: 8883}}); err != nil {
		t.Fatal(err)
	}
	refusals := []struct {
		name   string
		client *Client
		eps    []Endpoint
		status int
		want   string
	}{
		{"port 0", core, []Endpoint{{Id: "x", HostAddress: "192.0.2.1", PortNumber: 0}}, 400, "PortNumber"},
		{"no host", core, []Endpoint{{Id: "x", PortNumber: 8883}}, 400, "HostAddress"},
		{"another thing's", c.client(t, "reporter", c.certs["gw"]), []Endpoint{{Id: "x", HostAddress: "192.0.2.1", PortNumber: 8883}}, 403,
			"greengrass:UpdateConnectivityInfo on arn:aws:iot:us-east-1:123456789012:thing/reporter"},
		{"unregistered certificate", c.client(t, "gw", identity(t, c.ca, "gw")), []Endpoint{{Id: "x", HostAddress: "192.0.2.1", PortNumber: 8883}}, 403,
			"is not registered"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.client.UpdateConnectivity(ctx, tt.eps)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.status || apiErr.Call != "UpdateConnectivityInfo" || !strings.Contains(apiErr.Message, tt.want) {
				t.Fatalf("err = %v; want UpdateConnectivityInfo %d with %q", err, tt.status, tt.want)
			}
			if !Refused(err) {
				t.Errorf("Refused(%v) = false", err)
			}
			if !strings.Contains(err.Error(), strconv.Itoa(tt.status)) {
				t.Errorf("error %q does not give the status", err)
			}
			if stored, _ := c.st.Connectivity("gw"); len(stored) != 1 || stored[0].HostAddress != "192.0.2.99" {
				t.Errorf("after a refused update ggcloud stores %+v", stored)
			}
		})
	}
}

func TestCreateCertificate(t *testing.T) {
	c := newCloud(t)
	core := c.client(t, "gw", c.certs["gw"])
	ctx := context.Background()
	if err := core.UpdateConnectivity(ctx, []Endpoint{{Id: "lan", HostAddress: "192.0.2.10", PortNumber: 8883},
		{Id: "nat", HostAddress: "gw.example", PortNumber: 443}}); err != nil {
		t.Fatal(err)
	}
	groupRoots := x509.NewCertPool()
	groupRoots.AddCert(c.groupCA.Cert)
	for _, kt := range []keyspec.Type{keyspec.RSA2048, keyspec.ECP256} {
		t.Run(string(kt), func(t *testing.T) {
			key, err := kt.Generate()
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, err := core.CreateCertificate(ctx, csrFor(t, key, "localhost"))
			if err != nil {
				t.Fatal(err)
			}
			if !got.Leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("the certificate is not for the CSR's key")
			}
			if !got.GroupCA.Equal(c.groupCA.Cert) {
				t.Errorf("GroupCA is %q, want the group's CA", got.GroupCA.Subject)
			}
			// Devices verify the core by the group CA, by any name they
			// reach it at: the CSR's and the reported connectivity.
			for _, name := range []string{"localhost", "192.0.2.10", "gw.example"} {
				if _, err := got.Leaf.Verify(x509.VerifyOptions{Roots: groupRoots, DNSName: name,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
					t.Errorf("as %s: %v", name, err)
				}
			}
			if _, err := got.Leaf.Verify(x509.VerifyOptions{Roots: c.roots, DNSName: "localhost"}); err == nil {
				t.Error("the MQTT server certificate chains to the identity CA")
			}
			if !got.ExpiresAt.Equal(got.Leaf.NotAfter) {
				t.Errorf("ExpiresAt %s, certificate NotAfter %s", got.ExpiresAt, got.Leaf.NotAfter)
			}
			if d := got.ExpiresAt.Sub(start); d < week-time.Minute || d > week+time.Minute {
				t.Errorf("valid for %s, want the group's 7 days", d)
			}
		})
	}
}

// wantAPIError fails unless err is an *APIError of call with status and
// a message containing msg, and Refused(err) is refused.
func wantAPIError(t *testing.T, err error, call string, status int, msg string, refused bool) {
	t.Helper()
	var e *APIError
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want an *APIError", err, err)
	}
	if e.Call != call || e.Status != status || !strings.Contains(e.Message, msg) {
		t.Errorf("APIError %+v; want %s %d with %q", e, call, status, msg)
	}
	if Refused(err) != refused {
		t.Errorf("Refused(%v) = %v, want %v", err, !refused, refused)
	}
}

func TestCreateCertificateRefused(t *testing.T) {
	c := newCloud(t)
	key, err := keyspec.RSA2048.Generate()
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, key)
	tests := []struct {
		name   string
		client *Client
		csr    []byte
		status int
		want   string
	}{
		{"policy lacks CreateCertificate", c.client(t, "reporter", c.certs["reporter"]), csr, 403,
			"no policy allows greengrass:CreateCertificate on arn:aws:iot:us-east-1:123456789012:thing/reporter"},
		{"unregistered certificate", c.client(t, "gw", identity(t, c.ca, "gw")), csr, 403, "is not registered"},
		{"core of no group", c.client(t, "lonely", c.certs["lonely"]), csr, 404, "lonely"},
		{"not a CSR", c.client(t, "gw", c.certs["gw"]), []byte("not DER"), 400, "Csr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.client.CreateCertificate(context.Background(), tt.csr)
			if got != nil {
				t.Errorf("a certificate despite %v", err)
			}
			wantAPIError(t, err, "CreateCertificate", tt.status, tt.want, true)
		})
	}
}

// TestNotRefused: failures a retry may mend are not Refused.
func TestNotRefused(t *testing.T) {
	ctx := context.Background()
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, key)

	t.Run("state store down: 500", func(t *testing.T) {
		c := newCloud(t)
		core := c.client(t, "gw", c.certs["gw"])
		c.st.Close()
		_, err := core.CreateCertificate(ctx, csr)
		wantAPIError(t, err, "CreateCertificate", 500, "state store unavailable", false)
		wantAPIError(t, core.UpdateConnectivity(ctx, nil), "UpdateConnectivityInfo", 500, "state store unavailable", false)
	})

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		ca, err := pki.NewCA("ca", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		core := newClient(t, port, "gw", roots, identity(t, ca, "gw"), 5*time.Second)
		for call, err := range map[string]error{
			"CreateCertificate":      func() error { _, err := core.CreateCertificate(ctx, csr); return err }(),
			"UpdateConnectivityInfo": core.UpdateConnectivity(ctx, nil),
		} {
			var apiErr *APIError
			if err == nil || errors.As(err, &apiErr) || Refused(err) {
				t.Errorf("%s: err = %v; want a connection error, not Refused", call, err)
			}
			if err != nil && (!strings.HasPrefix(err.Error(), call+": ") || !strings.Contains(err.Error(), "refused")) {
				t.Errorf("error %q does not name the call and the refused connection", err)
			}
		}
	})
}

// TestRefused: which answers retrying will not change.
func TestRefused(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 400}, true},
		{&APIError{Status: 403}, true},
		{&APIError{Status: 404}, true},
		{&APIError{Status: 409}, true},
		{&APIError{Status: 408}, false},
		{&APIError{Status: 429}, false},
		{&APIError{Status: 500}, false},
		{&APIError{Status: 502}, false},
		{&APIError{Status: 503}, false},
		{&APIError{Status: 301}, false},
		{fmt.Errorf("renewing: %w", &APIError{Status: 403}), true},
		{errors.New("403 Forbidden"), false},
		{context.DeadlineExceeded, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := Refused(tt.err); got != tt.want {
			t.Errorf("Refused(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// TestUnexpectedAnswers: answers that are not ggcloud's (a proxy's HTML, a
// wrong certificate, an impostor) give errors that say what is wrong.
func TestUnexpectedAnswers(t *testing.T) {
	ca, err := pki.NewCA("identity CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("another CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	groupCA, err := pki.NewCA("group CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	issueServer := func(by *pki.CA) tls.Certificate {
		cert, err := by.Issue(serverKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
			Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: serverKey}
	}
	leafKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	csr := csrFor(t, leafKey, "localhost")
	// signedBy answers CreateCertificate with a certificate signed by
	// signer and claimed to be from claimed.
	signedBy := func(signer, claimed *pki.CA) string {
		leaf, err := signer.Issue(leafKey.Public(), pki.Leaf{CommonName: "gw", DNSNames: []string{"localhost"}, Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"CertificatePem":%q,"GroupCA":%q}`, pki.EncodeCertificate(leaf), pki.EncodeCertificate(claimed.Cert))
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	tests := []struct {
		name   string
		server *pki.CA // who issued the server's certificate
		status int
		body   string
		// want is in the error; status > 0 means an *APIError of it.
		want    string
		apiErr  int
		refused bool
	}{
		{"HTML with 200", ca, 200, "<html><body>Welcome to nginx!</body></html>", "CreateCertificate: answer: invalid character '<'", 0, false},
		{"truncated JSON", ca, 200, `{"CertificatePem":"---`, "CreateCertificate: answer: unexpected end of JSON input", 0, false},
		{"proxy error page", ca, 502, "<html>502 Bad Gateway</html>\n", "502 Bad Gateway: <html>502 Bad Gateway</html>", 502, false},
		{"plain-text refusal", ca, 403, "Forbidden by the firewall\n", "403 Forbidden: Forbidden by the firewall", 403, true},
		{"empty 404", ca, 404, "", "CreateCertificate: 404 Not Found: ", 404, true},
		{"no certificate", ca, 200, `{"GroupCA":"x"}`, "CreateCertificate: CertificatePem", 0, false},
		{"bad group CA", ca, 200, fmt.Sprintf(`{"CertificatePem":%q,"GroupCA":"junk"}`, pki.EncodeCertificate(ca.Cert)), "CreateCertificate: GroupCA", 0, false},
		{"certificate of another CA", ca, 200, signedBy(otherCA, groupCA), "CreateCertificate: the certificate does not chain to the group CA", 0, false},
		{"good answer from an impostor", otherCA, 200, signedBy(groupCA, groupCA), "certificate signed by unknown authority", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := serveTLS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			}), issueServer(tt.server))
			core := newClient(t, port, "gw", roots, identity(t, ca, "gw"), 5*time.Second)
			got, err := core.CreateCertificate(context.Background(), csr)
			if err == nil || got != nil {
				t.Fatalf("accepted: %+v", got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want %q", err, tt.want)
			}
			var e *APIError
			if isAPI := errors.As(err, &e); isAPI != (tt.apiErr != 0) || isAPI && e.Status != tt.apiErr {
				t.Errorf("err %v (%T): want an *APIError %d: %v", err, err, tt.apiErr, tt.apiErr != 0)
			}
			if Refused(err) != tt.refused {
				t.Errorf("Refused = %v, want %v", !tt.refused, tt.refused)
			}
		})
	}
}

// TestTimeout: a control plane that does not answer costs a call its
// Timeout, not forever.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := serveCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for handlers
	core := srv.client(t, 300*time.Millisecond)
	start := time.Now()
	err := core.UpdateConnectivity(context.Background(), nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s with a 300ms timeout", took)
	}
	if err == nil || Refused(err) || !strings.HasPrefix(err.Error(), "UpdateConnectivityInfo: ") {
		t.Errorf("err = %v; want a timeout of UpdateConnectivityInfo, not Refused", err)
	}

	// The caller's context bounds it too.
	core = srv.client(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = core.UpdateConnectivity(ctx, nil)
	if took := time.Since(start); took > 5*time.Second || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with a 300ms context: %v after %s", err, took)
	}
}

// TestDownloadBoundedByProgress: a download that keeps delivering bytes
// may take longer than the client's Timeout (a large image release on a
// slow link); one that stops delivering fails after Timeout, saying so.
func TestDownloadBoundedByProgress(t *testing.T) {
	const chunk, chunks = 100, 12
	release := make(chan struct{})
	srv := serveCA(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		flusher := w.(http.Flusher)
		if strings.HasSuffix(r.URL.Path, "/stall") {
			w.Write(make([]byte, chunk))
			flusher.Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		for range chunks {
			w.Write(make([]byte, chunk))
			flusher.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond): // the pace of a slow link
			}
		}
	}))
	t.Cleanup(func() { close(release) })
	timeout := 500 * time.Millisecond
	core := srv.client(t, timeout)
	ref := DeploymentRef{GroupId: "g", DeploymentId: "d"}

	var got bytes.Buffer
	start := time.Now()
	n, err := core.GetFunctionCode(context.Background(), ref, "slow", 1<<20, &got)
	if err != nil || n != chunk*chunks {
		t.Fatalf("slow but steady download: %d bytes, %v; want %d bytes", n, err, chunk*chunks)
	}
	if took := time.Since(start); took < timeout {
		t.Fatalf("the download took %s, less than the %s timeout: the test proves nothing", took, timeout)
	}

	start = time.Now()
	_, err = core.GetFunctionCode(context.Background(), ref, "stall", 1<<20, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "no data from the control plane") {
		t.Errorf("stalled download: %v; want an error saying no data arrived", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a stalled download took %s to fail with a %s timeout", took, timeout)
	}
}
