// Package mochiext holds what ggcore's local broker (core/broker) and
// ggcloud's MQTT broker (tools/ggcloud/iotbroker) both add to the mochi
// MQTT server: a mutual-TLS-only listener and the sending of one retained
// message to a subscriber, for brokers that replay retained messages
// themselves because each must pass their own check first.
package mochiext

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// HandshakeTimeout bounds a connection's TLS handshake, so that idle or
// slow sockets cannot hold goroutines.
const HandshakeTimeout = 10 * time.Second

// TLSListener is a mochi listener that accepts TCP connections, completes
// the TLS handshake itself (with HandshakeTimeout, logging why a
// handshake failed) and hands the broker only TLS connections that
// presented a client certificate. There is no plain-TCP path.
type TLSListener struct {
	id     string
	ln     net.Listener
	config *tls.Config
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

var _ listeners.Listener = (*TLSListener)(nil)

// NewTLSListener serves ln with config. log receives the listener's
// lines; nil means the logger mochi passes to Init.
func NewTLSListener(id string, ln net.Listener, config *tls.Config, log *slog.Logger) *TLSListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &TLSListener{id: id, ln: ln, config: config, log: log, ctx: ctx, cancel: cancel}
}

// ID is the listener's ID.
func (l *TLSListener) ID() string { return l.id }

// Address is the listening address.
func (l *TLSListener) Address() string { return l.ln.Addr().String() }

// Protocol is mqtts.
func (l *TLSListener) Protocol() string { return "mqtts" }

// Init takes mochi's logger unless the listener was given one.
func (l *TLSListener) Init(log *slog.Logger) error {
	if l.log == nil {
		l.log = log
	}
	return nil
}

// Serve accepts connections until Close.
func (l *TLSListener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Error("accept failed", "listener", l.id, "error", err)
			}
			return
		}
		go l.handle(conn, establish)
	}
}

func (l *TLSListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	tc := tls.Server(conn, l.config)
	ctx, cancel := context.WithTimeout(l.ctx, HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err == nil && len(tc.ConnectionState().PeerCertificates) == 0 {
		err = errors.New("no client certificate")
	}
	if err != nil {
		l.log.Info("tls handshake refused", "remote", conn.RemoteAddr().String(), "error", err)
		_ = tc.Close()
		return
	}
	if err := establish(l.id, tc); err != nil && !errors.Is(err, net.ErrClosed) {
		l.log.Debug("client session ended", "remote", conn.RemoteAddr().String(), "error", err)
	}
}

// Close stops accepting, aborts handshakes in progress and asks the broker
// to close the listener's clients.
func (l *TLSListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.cancel()
		_ = l.ln.Close()
		closeClients(l.id)
	})
}
