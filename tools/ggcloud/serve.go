package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ggcore/ggcore/core/deploy"
	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
	"github.com/ggcore/ggcore/tools/ggcloud/api"
	"github.com/ggcore/ggcore/tools/ggcloud/iotbroker"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// shutdownTimeout bounds a graceful shutdown.
const shutdownTimeout = 10 * time.Second

// serveOptions are serve's flags.
type serveOptions struct {
	listen, certFile, keyFile string
	region, account           string
	minValidity               time.Duration
	mqttListen                string
}

// runServe serves the control-plane API on --listen and the admin API on
// DATA/admin.sock until ctx ends (SIGTERM, SIGINT), then shuts both down
// gracefully and removes the socket. With --mqtt-listen it also serves
// the MQTT broker that stands in for AWS IoT Core (package iotbroker),
// with the same server certificate.
func runServe(ctx context.Context, g *globals, args []string, stdout, stderr io.Writer) error {
	var o serveOptions
	fs := flags("serve", g, stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8443", "HOST:PORT of the HTTPS API (ggHost:ggHttpPort)")
	fs.StringVar(&o.certFile, "cert", "", "server certificate (PEM, the leaf first)")
	fs.StringVar(&o.keyFile, "key", "", "server private key: a PEM file path or file:// URI")
	fs.StringVar(&o.region, "region", "", "AWS region of the ARNs (default: the one stored, else "+store.DefaultRegion+")")
	fs.StringVar(&o.account, "account", "", "12-digit account ID of the ARNs (default: the one stored, else "+store.DefaultAccount+")")
	fs.StringVar(&o.mqttListen, "mqtt-listen", "", "HOST:PORT of the MQTT broker standing in for AWS IoT Core (iotHost:8883); off when empty")
	fs.DurationVar(&o.minValidity, "test-min-validity", 0, "FOR TESTS ONLY: lower the 7-day floor of MQTT server certificate validity")
	if _, err := parse(fs, args, 0, false, ""); err != nil {
		return err
	}
	if o.certFile == "" || o.keyFile == "" {
		return usagef("--cert and --key are required")
	}
	if o.minValidity < 0 {
		return usagef("--test-min-validity %v: want a positive duration", o.minValidity)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cert, err := loadServerCertificate(o.certFile, o.keyFile)
	if err != nil {
		return err
	}
	st, err := store.Open(g.data)
	if err != nil {
		return err
	}
	defer st.Close()
	id, err := st.UseIdentity(store.Identity{Region: o.region, Account: o.account})
	if err != nil {
		return err
	}
	if o.minValidity > 0 {
		log.Warn("--test-min-validity lowers the 7-day floor of MQTT server certificate validity: for tests only", "min_validity", o.minValidity)
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	adminLn, err := admin.Listen(g.data)
	if err != nil {
		ln.Close()
		return err
	}
	socket := admin.SocketPath(g.data)
	defer os.Remove(socket)
	var mqttBroker *iotbroker.Broker
	if o.mqttListen != "" {
		mqttBroker, err = startBroker(o.mqttListen, cert, st, id, log)
		if err != nil {
			ln.Close()
			adminLn.Close()
			return err
		}
		defer mqttBroker.Close()
		log.Info("ggcloud MQTT broker ready", "addr", mqttBroker.Addr().String())
	}

	apiSrv := &http.Server{
		Handler:           (&api.Server{Store: st, Region: id.Region, Account: id.Account, Log: log, MinValidity: o.minValidity}).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelInfo),
	}
	serveAmazonCA(apiSrv)
	adminSrv := &http.Server{Handler: admin.NewHandler(st, admin.Options{Log: log, Deployed: func(group, core, deployment string) {
		notifyDeployment(mqttBroker, log, group, core, deployment)
	}}), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() { errc <- apiSrv.Serve(tls.NewListener(ln, serverTLS(cert))) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("ggcloud ready", "addr", ln.Addr().String(), "admin", socket, "region", id.Region, "account", id.Account)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("ggcloud stopping")
	case serveErr = <-errc:
		log.Error("ggcloud failed", "error", serveErr)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = errors.Join(apiSrv.Shutdown(sctx), adminSrv.Shutdown(sctx))
	if mqttBroker != nil {
		err = errors.Join(err, mqttBroker.Close())
	}
	if serveErr != nil {
		return fmt.Errorf("stopped serving: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("ggcloud stopped")
	return nil
}

// serverTLS is the API's TLS configuration: TLS 1.2 with ECDHE and
// AES-GCM only (or TLS 1.3), and a client certificate required. The
// certificate is not verified against a CA: the API authorizes it by its
// registration (its SHA-256). An expired or not yet valid one is refused
// in the handshake.
func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		},
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		// x-amzn-http-ca: the AWS IoT Device SDK's discovery on port 443.
		NextProtos: []string{"http/1.1", alpnAmazonCA},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("ggcloud: a client certificate is required")
			}
			c := cs.PeerCertificates[0]
			if now := time.Now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
				return fmt.Errorf("ggcloud: client certificate %s is valid from %s to %s only",
					pki.CertificateID(c.Raw), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
			}
			return nil
		},
	}
}

// startBroker starts the MQTT broker on addr with the API's server
// certificate and client-certificate checks.
func startBroker(addr string, cert tls.Certificate, st *store.Store, id store.Identity, log *slog.Logger) (*iotbroker.Broker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--mqtt-listen: %w", err)
	}
	cfg := serverTLS(cert)
	// Any ALPN a client offers (none, mqtt, x-amzn-mqtt-ca) is accepted.
	cfg.NextProtos = nil
	b, err := iotbroker.New(iotbroker.Options{Listener: ln, TLS: cfg, Store: st, Region: id.Region, Account: id.Account, Log: log})
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := b.Start(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// loadServerCertificate reads the server's certificate chain and key and
// checks that they match and that the certificate is valid now.
func loadServerCertificate(certFile, keyRef string) (tls.Certificate, error) {
	certs, err := pki.ReadCertificates(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--cert: %w", err)
	}
	if !strings.Contains(keyRef, "://") {
		abs, err := filepath.Abs(keyRef)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("--key: %w", err)
		}
		keyRef = "file://" + abs
	}
	key, err := keys.Open(keyRef)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--key: %w", err)
	}
	out, err := tlsconf.Certificate(key, certs)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("--key is not the key of --cert %s: %w", certFile, err)
	}
	if leaf, now := out.Leaf, time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("--cert %s is valid from %s to %s only", certFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return *out, nil
}

// DeploymentNotifyTopic is where ggcloud tells a core, over its MQTT
// broker, that its group has a new deployment: inside the
// $aws/things/<core>-* topics v1's minimal core policy allows.
func DeploymentNotifyTopic(core string) string {
	return "$aws/things/" + core + "-gda/deployment/notify"
}

// notifyDeployment tells the core of a new deployment, when the MQTT
// broker runs; the core also polls, so a lost notice only delays it.
func notifyDeployment(b *iotbroker.Broker, log *slog.Logger, group, core, deployment string) {
	if b == nil {
		return
	}
	payload, _ := json.Marshal(map[string]string{"GroupId": group, "DeploymentId": deployment})
	if err := b.Publish(deploy.NotifyTopic(core), payload); err != nil {
		log.Warn("deployment notification not sent", "core", core, "deployment", deployment, "error", err)
	}
}
