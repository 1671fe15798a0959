package broker

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Acknowledgement batching. mochi writes each PUBACK (PUBREC, PUBREL,
// PUBCOMP) as its own TLS record with its own write system call, from the
// connection's reader goroutine, right after it read the packet it
// acknowledges. A publisher that keeps several QoS 1 messages in flight
// has them read in one go, so their acknowledgements can go out together:
// one record-sized write instead of one system call each, the broker's
// largest per-message cost after the messages themselves.
//
// corkConn sits under the TLS layer of every accepted connection. From
// the moment the reader goroutine has read a packet that mochi
// acknowledges (queueHook.OnPacketRead) until it next has to wait for
// input (Read), the encrypted records written to the connection are held
// back and then written at once. Every other write (the queue writers'
// deliveries, which bypass the hold) first writes what is held, so the
// order of records, which TLS requires, never changes; Close writes it
// too, without waiting for a writer that is stuck.

// corkMax bounds the bytes held back; past it they are written at once.
const corkMax = 16 << 10

// corkCloseWait bounds the write of held bytes when the connection closes.
const corkCloseWait = 10 * time.Millisecond

// corkListener wraps the connections a listener accepts in corkConns.
type corkListener struct{ net.Listener }

func (l corkListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &corkConn{Conn: c}, nil
}

// corkConn is a net.Conn that can hold its writes back (see above).
type corkConn struct {
	net.Conn

	// corked is set while the reader processes packets it acknowledges;
	// bypass counts writes in progress that must not be held.
	corked  atomic.Bool
	bypass  atomic.Int32
	pending atomic.Bool // held holds bytes

	mu   sync.Mutex // serialises writes to Conn and guards held
	held []byte
}

// Write holds p back while the connection is corked, or writes what is
// held and p in one system call.
func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked.Load() && c.bypass.Load() == 0 && len(c.held)+len(p) <= corkMax {
		c.held = append(c.held, p...)
		c.pending.Store(true)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.held = append(c.held, p...)
	err := c.flushLocked()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// flushLocked writes what is held; c.mu is held.
func (c *corkConn) flushLocked() error {
	_, err := c.Conn.Write(c.held)
	if cap(c.held) > corkMax {
		c.held = nil
	} else {
		c.held = c.held[:0]
	}
	c.pending.Store(false)
	return err
}

// Read ends the hold, writing what is held, before it waits for input.
func (c *corkConn) Read(p []byte) (int, error) {
	c.corked.Store(false)
	if c.pending.Load() {
		c.mu.Lock()
		var err error
		if len(c.held) > 0 {
			err = c.flushLocked()
		}
		c.mu.Unlock()
		if err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// Close writes what is held, unless a write is in progress or the peer
// does not take it within corkCloseWait, and closes the connection.
func (c *corkConn) Close() error {
	c.corked.Store(false)
	if c.pending.Load() && c.mu.TryLock() {
		if len(c.held) > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(corkCloseWait))
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}

// corkOf returns the corkConn under cl's TLS connection, or nil.
func corkOf(cl *mqtt.Client) *corkConn {
	if tc, ok := cl.Net.Conn.(*tls.Conn); ok {
		if cc, ok := tc.NetConn().(*corkConn); ok {
			return cc
		}
	}
	return nil
}

// acknowledged reports whether mochi answers pk with an acknowledgement
// written from the reader goroutine.
func acknowledged(pk *packets.Packet) bool {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		return pk.FixedHeader.Qos > 0
	case packets.Pubrec, packets.Pubrel:
		return true
	}
	return false
}
