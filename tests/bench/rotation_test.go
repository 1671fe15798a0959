package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/controlplane"
	"github.com/ggcore/ggcore/core/dcm"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/api"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// BenchmarkRotation measures one MQTT server certificate rotation as the
// core's device certificate manager does it: a fresh key in the backend,
// a CSR signed with it, CreateCertificate over mutual TLS to ggcloud's
// API on 127.0.0.1 (policy check, group CA signs SHA256-RSA), the
// certificate checked and recorded durably, and the swap. RSA-2048 in a
// file is v1's default and the baseline.
//
//	go test -run NONE -bench Rotation ./tests/bench/
func BenchmarkRotation(b *testing.B) {
	for _, tc := range []struct {
		backend keyspec.Backend
		kt      keyspec.Type
	}{
		{keyspec.File, keyspec.RSA2048},
		{keyspec.File, keyspec.ECP256},
		{keyspec.TPM, keyspec.ECP256},
		{keyspec.PKCS11, keyspec.RSA2048},
	} {
		b.Run(fmt.Sprintf("%s/%s", tc.backend, tc.kt), func(b *testing.B) {
			issuer := startControlPlane(b)
			var opts keys.StoreOptions
			switch tc.backend {
			case keyspec.TPM:
				opts.TPMDevice = testtool.StartSWTPM(b, "unix").Device
			case keyspec.PKCS11:
				tok := testtool.NewSoftHSMToken(b, "bench", "1234")
				opts.PKCS11 = &config.PKCS11{P11Provider: tok.Module, SlotLabel: tok.Label, SlotUserPin: tok.PIN}
			}
			ks := keys.NewStore(opts)
			b.Cleanup(func() { ks.Close() })
			dir := b.TempDir()
			rotated := make(chan struct{}, 1)
			m, err := dcm.New(dcm.Options{
				Dir:        dir,
				Keys:       dcm.StoreKeys{Store: ks, Kind: tc.backend, Dir: dir, LabelPrefix: "bench-mqtt-server", Type: tc.kt},
				Issuer:     issuer,
				CommonName: "gw",
				Names:      func() []string { return []string{"127.0.0.1", "localhost"} },
				OnRotate:   func() { rotated <- struct{}{} },
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { m.Run(ctx); close(done) }()
			b.Cleanup(func() { cancel(); <-done })
			for deadline := time.Now().Add(30 * time.Second); m.Certificate() == nil; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatal("no first certificate within 30 s")
				}
			}
			b.ResetTimer()
			for b.Loop() {
				m.Renew()
				select {
				case <-rotated:
				case <-time.After(30 * time.Second):
					b.Fatal("no rotation within 30 s")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/rotation")
		})
	}
}

// startControlPlane serves ggcloud's API over mutual TLS on 127.0.0.1 with
// a core "gw" allowed CreateCertificate in a group with a 7-day validity,
// and returns the core's client of it.
func startControlPlane(b *testing.B) *controlplane.Client {
	b.Helper()
	root, err := pki.NewCA("bench root", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	groupCA, err := pki.NewCA("bench group CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	coreKey, err := keyspec.ECP256.Generate()
	if err != nil {
		b.Fatal(err)
	}
	coreCert, err := root.Issue(coreKey.Public(), pki.Leaf{CommonName: "gw", Usage: pki.ClientAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	id := pki.CertificateID(coreCert.Raw)
	caKey, err := keys.MarshalPEM(groupCA.Key)
	if err != nil {
		b.Fatal(err)
	}
	const arn = "arn:aws:iot:us-east-1:000000000000:thing/gw"
	for _, err := range []error{
		st.CreateThing(store.Thing{Name: "gw", ARN: arn}),
		st.RegisterCertificate(store.Certificate{ID: id, Thing: "gw", PEM: string(pki.EncodeCertificate(coreCert))}),
		st.PutPolicy("gw-policy", []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"greengrass:CreateCertificate","Resource":"*"}]}`)),
		st.AttachPolicy("gw-policy", id),
		st.CreateGroup(store.Group{ID: "g1", Core: "gw", CAs: []string{string(pki.EncodeCertificate(groupCA.Cert))},
			CAKey: string(caKey), CertificateExpiryMs: 7 * 24 * 3600 * 1000}),
	} {
		if err != nil {
			b.Fatal(err)
		}
	}
	srvKey, err := keyspec.ECP256.Generate()
	if err != nil {
		b.Fatal(err)
	}
	srvCert, err := root.Issue(srvKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewUnstartedServer((&api.Server{Store: st, Region: "us-east-1", Account: "000000000000"}).Handler())
	srv.Config.ErrorLog = nil
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey, Leaf: srvCert}}}
	srv.StartTLS()
	b.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var p int
	fmt.Sscan(port, &p)
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	idCert := &tls.Certificate{Certificate: [][]byte{coreCert.Raw}, PrivateKey: coreKey, Leaf: coreCert}
	c := controlplane.New(controlplane.Options{Host: host, Port: p, Thing: "gw",
		TLS: tlsconf.Client(roots, host, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return idCert, nil })})
	b.Cleanup(c.Close)
	return c
}
