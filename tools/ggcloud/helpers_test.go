package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// ggcloud runs the command in-process and returns its exit status and
// output.
func ggcloud(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// mustRun runs the command and fails the test unless it succeeds; it
// returns stdout.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	code, stdout, stderr := ggcloud(args...)
	if code != 0 {
		t.Fatalf("ggcloud %s: exit %d: %s", strings.Join(args, " "), code, stderr)
	}
	return stdout
}

// pkiFiles is a test PKI written to files: an identity CA that issues
// thing certificates, a group CA, and ggcloud's server certificate.
type pkiFiles struct {
	dir                string
	ca                 *pki.CA
	groupCA, groupKey  string // files
	serverCert, server string // files: ggcloud's certificate and key
}

func newPKI(t testing.TB) *pkiFiles {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.NewCA("identity CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g, err := pki.NewCA("group CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pkiFiles{dir: dir, ca: ca}
	p.groupCA = write(t, dir, "group-ca.pem", pki.EncodeCertificate(g.Cert))
	key, err := keys.MarshalPEM(g.Key)
	if err != nil {
		t.Fatal(err)
	}
	p.groupKey = write(t, dir, "group-ca.key", key)
	srvKey, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Issue(srvKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	p.serverCert = write(t, dir, "server.pem", pki.EncodeCertificate(srv))
	srvKeyPEM, _ := keys.MarshalPEM(srvKey)
	p.server = write(t, dir, "server.key", srvKeyPEM)
	return p
}

// thing is a thing's certificate file, ID and TLS identity.
type thing struct {
	certFile string
	id       string
	tls      tls.Certificate
}

// issue makes a client certificate for name, valid until notAfter.
func (p *pkiFiles) issue(t testing.TB, name string, notAfter time.Time) thing {
	t.Helper()
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.ca.Issue(key.Public(), pki.Leaf{CommonName: name, Usage: pki.ClientAuth, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return thing{
		certFile: write(t, p.dir, name+"-"+pki.CertificateID(c.Raw)[:8]+".pem", pki.EncodeCertificate(c)),
		id:       pki.CertificateID(c.Raw),
		tls:      tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: crypto.Signer(key)},
	}
}

// client is an HTTPS client of ggcloud with th's certificate.
func (p *pkiFiles) client(th thing, cfg func(*tls.Config)) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	c := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{th.tls}}
	if cfg != nil {
		cfg(c)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: c}}
}

func write(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// server is a `ggcloud serve` running in-process.
type server struct {
	addr   string
	stderr *testtool.Buffer
	stop   context.CancelFunc
	done   chan int // its exit status
}

var readyLine = regexp.MustCompile(`msg="ggcloud ready" addr=(\S+)`)

// serve starts `ggcloud --data data serve` on a free loopback port and
// waits until it is ready; it is stopped at cleanup.
func serve(t testing.TB, data string, p *pkiFiles, extra ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{stderr: &testtool.Buffer{}, stop: cancel, done: make(chan int, 1)}
	args := append([]string{"--data", data, "serve", "--listen", "127.0.0.1:0", "--cert", p.serverCert, "--key", p.server}, extra...)
	go func() { s.done <- run(ctx, args, &bytes.Buffer{}, s.stderr) }()
	exited := false
	ready := testtool.Poll(testtool.Timeout, func() bool {
		if m := readyLine.FindStringSubmatch(s.stderr.String()); m != nil {
			s.addr = m[1]
			return true
		}
		select {
		case code := <-s.done:
			s.done <- code
			exited = true
		default:
		}
		return exited
	})
	if !ready || exited {
		cancel()
		t.Fatalf("ggcloud serve not ready within %v (exited: %t):\n%s", testtool.Timeout, exited, s.stderr)
	}
	t.Cleanup(func() { s.shutdown(t) })
	return s
}

// shutdown stops the server as SIGTERM would and returns its exit
// status (-1 if it was already stopped).
func (s *server) shutdown(t testing.TB) int {
	t.Helper()
	s.stop()
	select {
	case code, ok := <-s.done:
		if !ok {
			return -1
		}
		close(s.done)
		return code
	case <-time.After(testtool.Timeout):
		t.Fatalf("ggcloud serve did not stop within %v:\n%s", testtool.Timeout, s.stderr)
	}
	return -1
}
