// Package mochiext holds what ggcore's local broker (core/broker) and
// ggcloud's MQTT broker (tools/ggcloud/iotbroker) both add to the mochi
// MQTT server: a mutual-TLS-only listener that bounds the time to CONNECT
// and can shut its connections down without hanging (shutdown.go), and the
// sending of one retained message to a subscriber, for brokers that replay
// retained messages themselves because each must pass their own check
// first.
package mochiext

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// HandshakeTimeout bounds a connection's TLS handshake, so that idle or
// slow sockets cannot hold goroutines.
const HandshakeTimeout = 10 * time.Second

// DefaultConnectTimeout is how long a connection that completed its TLS
// handshake may take to send its whole CONNECT packet before it is closed
// (TLSListener.ConnectTimeout). mochi itself waits for CONNECT forever.
const DefaultConnectTimeout = 10 * time.Second

// TLSListener is a mochi listener that accepts TCP connections, completes
// the TLS handshake itself (with HandshakeTimeout, logging why a
// handshake failed) and hands the broker only TLS connections that
// presented a client certificate. There is no plain-TCP path.
//
// The listener remembers every connection it accepted until the broker
// is done with it, so that Shutdown can end them all.
type TLSListener struct {
	// ConnectTimeout bounds the time from the end of the TLS handshake to
	// the end of the CONNECT packet; a connection that takes longer is
	// closed and counted (ConnectTimeouts). Zero means
	// DefaultConnectTimeout. Set it before the broker serves.
	ConnectTimeout time.Duration

	id     string
	ln     net.Listener
	config *tls.Config
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	conns           connSet
	handshakes      atomic.Int64
	connectTimeouts atomic.Int64
}

var _ listeners.Listener = (*TLSListener)(nil)

// NewTLSListener serves ln with config. log receives the listener's
// lines; nil means the logger mochi passes to Init.
func NewTLSListener(id string, ln net.Listener, config *tls.Config, log *slog.Logger) *TLSListener {
	ctx, cancel := context.WithCancel(context.Background())
	return &TLSListener{id: id, ln: ln, config: config, log: log, ctx: ctx, cancel: cancel,
		conns: connSet{m: make(map[net.Conn]struct{})}}
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

// Handshakes is how many connections completed the TLS handshake with a
// client certificate.
func (l *TLSListener) Handshakes() int64 { return l.handshakes.Load() }

// ConnectTimeouts is how many connections were closed because their
// CONNECT did not arrive within ConnectTimeout.
func (l *TLSListener) ConnectTimeouts() int64 { return l.connectTimeouts.Load() }

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
		if !l.conns.add(conn) { // shut down meanwhile
			_ = conn.Close()
			return
		}
		go l.handle(conn, establish)
	}
}

// handle completes conn's TLS handshake and serves the connection.
//
// The goroutine reading a connection keeps a 16 KiB stack for as long as
// the connection lasts, and nothing here can make it smaller (mochi
// v2.7.9, Go 1.26, measured with a debugger on the runtime's stack
// copies and the compiled frame sizes):
//
//   - Doing the handshake in a goroutine of its own, so that the stack it
//     grows (the X25519MLKEM768 key exchange alone takes it past 8 KiB)
//     dies with it, saves nothing: even started from a 160-byte frame,
//     the goroutine that calls establish outgrows 8 KiB while mochi reads
//     CONNECT (Client.ReadPacket, a 2.5 KiB frame, is entered with 4.9 KiB
//     in use), and a PUBLISH takes it to 32 KiB (14 KiB in use in
//     mochi's OnPublish hooks) until a collection halves it again.
//   - The collector halves a stack only when what is in use, plus 800
//     bytes, is under a quarter of it: 3.2 KiB for 16 KiB. Parked waiting
//     for input the reader uses 6.8 KiB, 4.6 KiB of which are mochi's
//     frames above the read (Server.attachClient 2.9 KiB, Client.Read
//     1.6 KiB), so waiting for input through anything shallower than
//     crypto/tls (the socket's RawConn) would still leave it at 16 KiB.
//
// The same holds for mochi's writer goroutine at 4 KiB (Client.WriteLoop
// is a 1.8 KiB frame). Smaller stacks need smaller frames in mochi.
func (l *TLSListener) handle(conn net.Conn, establish listeners.EstablishFn) {
	defer l.conns.remove(conn)
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
	l.handshakes.Add(1)
	// mochi replaces the deadline once it has read CONNECT.
	_ = tc.SetDeadline(time.Now().Add(l.connectTimeout()))
	err = establish(l.id, tc)
	switch {
	case err == nil || errors.Is(err, net.ErrClosed):
	case connectTimedOut(err):
		l.connectTimeouts.Add(1)
		l.log.Info("connection closed: no CONNECT in time", "remote", conn.RemoteAddr().String(), "timeout", l.connectTimeout())
	default:
		l.log.Debug("client session ended", "remote", conn.RemoteAddr().String(), "error", err)
	}
	// mochi closed tc; closing conn too covers a session that ended
	// without Client.Stop.
	_ = conn.Close()
}

func (l *TLSListener) connectTimeout() time.Duration {
	if l.ConnectTimeout <= 0 {
		return DefaultConnectTimeout
	}
	return l.ConnectTimeout
}

// connectTimedOut tells whether establish failed because the deadline
// set before CONNECT passed while mochi was reading it: mochi wraps the
// read error of the CONNECT packet (and only that one) in "read
// connection: ..." (mochi v2 server.go attachClient). A keepalive timeout
// later in the session is a deadline error too, without that prefix.
func connectTimedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) && strings.HasPrefix(err.Error(), "read connection:")
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

// connSet is the set of connections a listener accepted and the broker is
// not done with.
type connSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool // closeAll was called: add refuses
}

// add remembers c; false means the set was closed and c must be closed.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// closeAll refuses further connections and closes every remembered one
// (the TCP socket: no TLS alert, which could block behind a stalled
// write).
func (s *connSet) closeAll() {
	s.mu.Lock()
	m := s.m
	s.m, s.closed = make(map[net.Conn]struct{}), true
	s.mu.Unlock()
	for c := range m {
		_ = c.Close()
	}
}
