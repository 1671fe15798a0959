// Package bench measures what the key backends cost a TLS server: full
// mutual-TLS handshakes per second with the MQTT server key in a file, in
// a TPM (swtpm) and in a PKCS#11 token (SoftHSM2), RSA-2048 and ECDSA
// P-256, fresh and resumed (TLS 1.3 session tickets), side by side in one
// run. The file key is the baseline.
//
//	go test -run NONE -bench Handshake ./tests/bench/
package bench

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

func BenchmarkHandshake(b *testing.B) {
	for _, backend := range []string{"file", "tpm", "pkcs11"} {
		for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.RSA2048} {
			b.Run(fmt.Sprintf("%s/%s", backend, kt), func(b *testing.B) {
				key := serverKey(b, backend, kt)
				srv := startServer(b, key)
				for _, mode := range []string{"fresh", "resumed"} {
					b.Run(mode, func(b *testing.B) {
						cfg := srv.clientConfig.Clone()
						if mode == "resumed" {
							cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
							handshake(b, srv.addr, cfg, false) // the ticket to resume from
						}
						b.ResetTimer()
						for b.Loop() {
							handshake(b, srv.addr, cfg, mode == "resumed")
						}
						b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
					})
				}
			})
		}
	}
}

// serverKey makes a signing key of type kt in the backend.
func serverKey(b *testing.B, backend string, kt keyspec.Type) crypto.Signer {
	b.Helper()
	var (
		ref  string
		opts keys.StoreOptions
	)
	switch backend {
	case "file":
		k, err := kt.Generate()
		if err != nil {
			b.Fatal(err)
		}
		return k
	case "tpm":
		opts.TPMDevice = testtool.StartSWTPM(b, "unix").Device
		ref = "file://" + filepath.Join(b.TempDir(), "server.tss2.pem")
	case "pkcs11":
		tok := testtool.NewSoftHSMToken(b, "bench", "1234")
		ref = "pkcs11:object=server;type=private;token=bench?module-path=" + tok.Module + "&pin-value=" + tok.PIN
	}
	store := keys.NewStore(opts)
	b.Cleanup(func() { store.Close() })
	k, err := store.Create(ref, kt, keyspec.Sign)
	if err != nil {
		b.Fatalf("create %s key in %s: %v", kt, backend, err)
	}
	return k
}

// server is a mutual-TLS server on 127.0.0.1 that answers every
// connection with one byte (so that the client reads its session ticket)
// and closes it.
type server struct {
	addr         string
	clientConfig *tls.Config
}

func startServer(b *testing.B, key crypto.Signer) *server {
	b.Helper()
	ca, err := pki.NewCA("bench CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := ca.Issue(key.Public(), pki.Leaf{CommonName: "core", DNSNames: []string{"localhost"},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	clientKey, err := keyspec.ECP256.Generate()
	if err != nil {
		b.Fatal(err)
	}
	clientLeaf, err := ca.Issue(clientKey.Public(), pki.Leaf{CommonName: "device", Usage: pki.ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cert := &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
	srvCfg, err := tlsconf.Server(tlsconf.ServerOptions{
		ClientCAs:      pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert, nil },
		HardwareKey:    keys.IsHardware(key),
	})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := tls.Server(c, srvCfg)
				if tc.Handshake() == nil {
					tc.Write([]byte{1})
				}
			}()
		}
	}()
	return &server{addr: ln.Addr().String(), clientConfig: &tls.Config{
		RootCAs: pool, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: [][]byte{clientLeaf.Raw}, PrivateKey: clientKey, Leaf: clientLeaf}},
	}}
}

// handshake runs one mutual-TLS handshake and reads the server's byte.
func handshake(b *testing.B, addr string, cfg *tls.Config, wantResumed bool) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil && !errors.Is(err, io.EOF) {
		b.Fatal(err)
	}
	if wantResumed && !c.ConnectionState().DidResume {
		b.Fatal("handshake did not resume")
	}
}
