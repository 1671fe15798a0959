package iotbroker

import (
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Shutting down without hanging.
//
// mochi's Server.Close closes each listener with a callback that finds
// the listener's clients (Clients.GetByListener) and disconnects them,
// then waits for every connection it accepted to end. Three things can
// make that wait forever (mochi v2.7.9):
//
//   - GetByListener takes the clients' read lock twice. A client
//     connecting or disconnecting in between (Clients.Add or Delete)
//     queues for the write lock, the second read lock queues behind it,
//     and neither returns: Close and that client's goroutine deadlock
//     (mochi-mqtt/server issue 488).
//   - A connection accepted before Close but not a client yet (its
//     CONNECT not read, or being checked) is not disconnected. mochi sets
//     no read deadline before CONNECT: an idle one is waited for forever,
//     and one whose CONNECT is admitted just after is served on.
//   - Disconnecting a client writes DISCONNECT under the client's lock,
//     which a write blocked on a client that does not read holds forever
//     (mochi sets no write deadline).
//
// So Broker.Close closes the listener itself before mochi does, with its
// own callback, and mochi's listener (mochiext.TLSListener) closes once:
// mochi's own callback then never runs. That callback disconnects the
// clients it finds with one read lock (Clients.GetAll), each in its own
// goroutine, for up to closeGrace; then it closes every connection the
// listener accepted, clients or not. mochi's Close, called next, finds
// only connections that are ending.

// closeGrace is how long Close lets the clients' DISCONNECT packets be
// written before it closes every connection.
const closeGrace = 2 * time.Second

// listenerID is the ID of the broker's only mochi listener.
const listenerID = "mqtts"

// closeClients stops the broker's listener and ends every connection it
// accepted: MQTT 5 clients get DISCONNECT 0x8B (server shutting down)
// first.
func (b *Broker) closeClients() {
	b.srv.Listeners.Close(listenerID, func(string) {
		var wg sync.WaitGroup
		for _, cl := range b.srv.Clients.GetAll() {
			if cl.Net.Inline || cl.Closed() {
				continue
			}
			wg.Add(1)
			go func(cl *mqtt.Client) {
				defer wg.Done()
				if cl.Properties.ProtocolVersion < 5 {
					cl.Stop(packets.ErrServerShuttingDown) // MQTT 3.1.1 has no server DISCONNECT
					return
				}
				_ = b.srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}(cl)
		}
		sent := make(chan struct{})
		go func() {
			wg.Wait()
			close(sent)
		}()
		grace := time.NewTimer(closeGrace)
		defer grace.Stop()
		select {
		case <-sent:
		case <-grace.C:
			b.log.Warn("mqtt clients not disconnected within the grace period: closing their connections", "grace", closeGrace)
		}
		b.conns.closeAll()
		// With every connection closed, the writes blocked end.
		<-sent
	})
}

// connsListener is a listener that remembers every connection it
// accepted until the connection is closed, so that they can all be
// closed, whatever state mochi has them in.
type connsListener struct {
	net.Listener

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool // closeAll was called: Accept refuses what it accepts
}

func newConnsListener(ln net.Listener) *connsListener {
	return &connsListener{Listener: ln, conns: make(map[*trackedConn]struct{})}
}

// Accept accepts a connection and remembers it until it is closed.
func (l *connsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll stops accepting and closes every connection accepted and
// still open.
func (l *connsListener) closeAll() {
	_ = l.Listener.Close()
	l.mu.Lock()
	conns := l.conns
	l.conns, l.closed = make(map[*trackedConn]struct{}), true
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

// trackedConn is a connection its listener forgets when it is closed.
type trackedConn struct {
	net.Conn
	l *connsListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
