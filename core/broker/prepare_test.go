package broker

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/ggcore/ggcore/core/tlsconf"
)

// TestPrepareThenServe checks the two-step start ggcore uses: a prepared
// broker listens nowhere, refuses a TLS configuration that does not
// verify client certificates, and once served routes like one from New.
func TestPrepareThenServe(t *testing.T) {
	f := newTestFleet(t, "pub", "sub")
	b, err := Prepare(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Limits: f.limits},
		f.group(sub("s1", "pub", "t/#", "sub")))
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	if b.Addr() != nil || b.Connections() != 0 {
		t.Fatalf("a prepared broker listens on %v with %d connections; want nowhere", b.Addr(), b.Connections())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ln, &tls.Config{}); err == nil {
		t.Fatal("Serve took a TLS configuration that does not verify client certificates")
	}
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile: tlsconf.Strict, ClientCAs: f.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Serve(ln, cfg); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	f.broker = b
	pub, s := f.mustConnect("pub"), f.mustConnect("sub")
	s.MustSubscribe(t, 1, "t/#")
	pub.publish(t, "t/1", "hello", false)
	s.expect(t, "t/1", "hello")
	if b.Connections() != 2 {
		t.Fatalf("connections = %d, want 2", b.Connections())
	}
}
