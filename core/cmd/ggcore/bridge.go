package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/ggcore/ggcore/core/bridge"
	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/spool"
	"github.com/ggcore/ggcore/core/tlsconf"
)

// upstream is the cloud side of the core: the spool and the bridge.
type upstream struct {
	spool  *spool.Spool
	bridge *bridge.Bridge
}

// upstreamOptions is what the cloud side is built from.
type upstreamOptions struct {
	// host and port are coreThing.iotHost and iotMqttPort; clientID is
	// the core's thing name.
	host     string
	port     int
	clientID string
	// keepAlive is coreThing.keepAlive; maxRetryInterval caps the wait
	// between connection attempts.
	keepAlive        uint16
	maxRetryInterval time.Duration
	// identity is the IoTCertificate key with its certificate; roots
	// (crypto.caPath) verify the server.
	identity *tls.Certificate
	roots    *x509.CertPool
	// spoolPath is the spool file, holding at most spoolMaxBytes (the
	// group's GGCloudSpooler setting).
	spoolPath     string
	spoolMaxBytes int64
	// filters are the upstream subscriptions (cloudFilters).
	filters []string
	// deliver takes messages from the cloud to the local broker.
	deliver func(topic string, payload []byte, qos byte) error
	// notifyTopic is where the cloud announces deployments; onNotify
	// runs for each announcement.
	notifyTopic string
	onNotify    func()
	log         *slog.Logger
}

// openUpstream opens the spool and builds the bridge to the cloud. The
// bridge runs once Run is called on it.
func openUpstream(o upstreamOptions) (*upstream, error) {
	sp, err := spool.Open(spool.Options{Path: o.spoolPath, MaxBytes: o.spoolMaxBytes, Log: o.log})
	if err != nil {
		return nil, fmt.Errorf("writeDirectory: %w", err)
	}
	control := map[string]func([]byte){}
	if o.onNotify != nil {
		control[o.notifyTopic] = func([]byte) { o.onNotify() }
	}
	b, err := bridge.New(bridge.Options{
		Host: o.host, Port: o.port, ClientID: o.clientID,
		KeepAlive:        o.keepAlive,
		MaxRetryInterval: o.maxRetryInterval,
		TLS: tlsconf.Client(o.roots, o.host, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return o.identity, nil
		}),
		Spool:   sp,
		Deliver: o.deliver,
		Control: control,
		Log:     o.log,
	})
	if err != nil {
		sp.Close()
		return nil, err
	}
	b.SetFilters(o.filters)
	st := sp.Stats()
	o.log.Info("cloud spool opened", "messages", st.Messages, "bytes", st.Bytes, "max_bytes", o.spoolMaxBytes)
	return &upstream{spool: sp, bridge: b}, nil
}

// cloudFilters are the Subjects of the subscriptions whose source is the
// cloud: what the core subscribes to upstream.
func cloudFilters(g *config.Group) []string {
	var fs []string
	for _, s := range g.Subscriptions {
		if s.Source == broker.CloudSource {
			fs = append(fs, s.Subject)
		}
	}
	return fs
}
