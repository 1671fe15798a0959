package main

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
)

// alpnAmazonCA is the ALPN protocol AWS IoT endpoints accept on port 443
// for what is otherwise served on 8443 (mutual TLS on 443). The AWS IoT
// Device SDK v2's Greengrass DiscoveryClient dials port 443 offering only
// this protocol whenever its TLS stack has ALPN. It is HTTP/1.1 inside.
const alpnAmazonCA = "x-amzn-http-ca"

// serveAmazonCA makes srv speak HTTP/1.1 on connections that negotiated
// x-amzn-http-ca: net/http would close them, as it does for any protocol
// it does not know.
func serveAmazonCA(srv *http.Server) {
	srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){
		alpnAmazonCA: serveHTTP1,
	}
}

// serveHTTP1 serves HTTP/1.1 on c until c is closed (net/http closes it
// when a TLSNextProto function returns). h is net/http's handler for such
// connections, which sets each request's TLS state from c.
func serveHTTP1(s *http.Server, c *tls.Conn, h http.Handler) {
	conn := &http1Conn{Conn: c, closed: make(chan struct{})}
	inner := &http.Server{Handler: h, ErrorLog: s.ErrorLog, ReadHeaderTimeout: s.ReadHeaderTimeout,
		ReadTimeout: s.ReadTimeout, WriteTimeout: s.WriteTimeout, IdleTimeout: s.IdleTimeout,
		MaxHeaderBytes: s.MaxHeaderBytes}
	_ = inner.Serve(&oneConnListener{conn: conn})
}

// http1Conn hides the *tls.Conn type from net/http, which then speaks
// HTTP/1.1 on it, and tells when it is closed.
type http1Conn struct {
	*tls.Conn
	once   sync.Once
	closed chan struct{}
}

func (c *http1Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// oneConnListener accepts conn once, then waits for it to close.
type oneConnListener struct {
	conn     *http1Conn
	accepted bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.accepted {
		l.accepted = true
		return l.conn, nil
	}
	<-l.conn.closed
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.conn.LocalAddr() }
