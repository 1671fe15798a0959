package iotbroker

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

// handshakeTimeout bounds a connection's TLS handshake, so that idle or
// slow sockets cannot hold goroutines.
const handshakeTimeout = 10 * time.Second

// tlsListener is a mochi listener that accepts TCP connections, completes
// the TLS handshake itself (with a deadline, logging why a handshake
// failed) and hands only TLS connections with a client certificate to the
// broker. There is no plain-TCP path.
type tlsListener struct {
	id     string
	ln     net.Listener
	config *tls.Config
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

var _ listeners.Listener = (*tlsListener)(nil)

func newTLSListener(id string, ln net.Listener, config *tls.Config, log *slog.Logger) *tlsListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{id: id, ln: ln, config: config, log: log, ctx: ctx, cancel: cancel}
}

func (l *tlsListener) ID() string       { return l.id }
func (l *tlsListener) Address() string  { return l.ln.Addr().String() }
func (l *tlsListener) Protocol() string { return "mqtts" }

// Init keeps the broker's logger rather than mochi's, which passes on
// warnings only.
func (l *tlsListener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until Close.
func (l *tlsListener) Serve(establish listeners.EstablishFn) {
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

func (l *tlsListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	tc := tls.Server(conn, l.config)
	ctx, cancel := context.WithTimeout(l.ctx, handshakeTimeout)
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
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.cancel()
		_ = l.ln.Close()
		closeClients(l.id)
	})
}
