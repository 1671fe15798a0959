package mochiext

import (
	"log/slog"
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
//     CONNECT not read, or being checked) is not disconnected: it is
//     waited for until ConnectTimeout, and one whose CONNECT is admitted
//     just after is served on.
//   - Disconnecting a client writes DISCONNECT under the client's lock,
//     which a write blocked on a client that does not read holds forever
//     (mochi sets no write deadline).
//
// So a broker calls Shutdown before mochi's Close. Shutdown closes the
// listener with its own callback, and the listener closes once: mochi's
// callback never runs. Shutdown's disconnects the clients it finds with
// one read lock (Clients.GetAll), each in its own goroutine, for up to a
// grace period; then it closes every connection the listener accepted,
// clients or not. mochi's Close, called next, finds only connections that
// are ending.

// ShutdownGrace is a grace period for Shutdown: how long clients are
// given to take their DISCONNECT before every connection is closed.
const ShutdownGrace = 2 * time.Second

// Shutdown stops accepting and ends every connection the listener
// accepted, whatever srv has it doing: MQTT 5 clients get DISCONNECT 0x8B
// (server shutting down) first, MQTT 3.1.1 clients are stopped, and once
// they are done, or grace has passed, every connection still open is
// closed. It returns once every client's disconnection has ended. Call it
// before srv.Close; it does nothing when called again.
func (l *TLSListener) Shutdown(srv *mqtt.Server, grace time.Duration) {
	l.Close(func(string) {
		var wg sync.WaitGroup
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Inline || cl.Net.Listener != l.id || cl.Closed() {
				continue
			}
			wg.Add(1)
			go func(cl *mqtt.Client) {
				defer wg.Done()
				if cl.Properties.ProtocolVersion < 5 {
					cl.Stop(packets.ErrServerShuttingDown) // MQTT 3.1.1 has no server DISCONNECT
					return
				}
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}(cl)
		}
		sent := make(chan struct{})
		go func() {
			wg.Wait()
			close(sent)
		}()
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-sent:
		case <-timer.C:
			log := l.log
			if log == nil { // never served
				log = slog.Default()
			}
			log.Warn("mqtt clients not disconnected within the grace period: closing their connections", "grace", grace)
		}
		l.conns.closeAll()
		// With every connection closed, the writes blocked end.
		<-sent
	})
}
