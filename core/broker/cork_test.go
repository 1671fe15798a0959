package broker

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// corkPair returns a corkConn over one end of a loopback TCP connection
// and the other end.
func corkPair(t *testing.T) (*corkConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := corkListener{ln}.Accept()
		accepted <- c
	}()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	if c == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return c.(*corkConn), peer
}

// readN reads exactly n bytes from c within testtool.Timeout.
func readN(t *testing.T, c net.Conn, n int) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testtool.Timeout))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return b
}

// Acknowledgements written while the connection is corked reach the peer
// together once the reader waits for input, after any held before, and a
// delivery written meanwhile goes out at once, after them: the peer sees
// every byte, in the order written.
func TestCorkHoldsWritesUntilRead(t *testing.T) {
	c, peer := corkPair(t)
	c.corked.Store(true)
	for _, p := range []string{"ack1", "ack2"} {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	_ = peer.SetReadDeadline(time.Now().Add(testtool.Settle))
	if n, _ := peer.Read(make([]byte, 16)); n > 0 {
		t.Fatalf("peer received %d bytes while the connection was corked", n)
	}
	// The reader waits for input: what is held goes out first.
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	if got := readN(t, peer, 8); string(got) != "ack1ack2" {
		t.Fatalf("peer received %q, want the held acknowledgements", got)
	}
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Corked again: a delivery (bypass) takes what is held along, in order.
	c.corked.Store(true)
	if _, err := c.Write([]byte("ack3")); err != nil {
		t.Fatal(err)
	}
	c.bypass.Add(1)
	if _, err := c.Write([]byte("publish")); err != nil {
		t.Fatal(err)
	}
	c.bypass.Add(-1)
	if got := readN(t, peer, 11); string(got) != "ack3publish" {
		t.Fatalf("peer received %q, want the held acknowledgement, then the delivery", got)
	}

	// More than corkMax is not held.
	big := bytes.Repeat([]byte{7}, corkMax+1)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if got := readN(t, peer, len(big)); !bytes.Equal(got, big) {
		t.Fatalf("peer did not receive the large write")
	}

	// Close writes what is held before closing.
	if _, err := c.Write([]byte("disconnect")); err != nil {
		t.Fatal(err)
	}
	c.Close()
	_ = peer.SetReadDeadline(time.Now().Add(testtool.Timeout))
	rest, err := io.ReadAll(peer)
	if err != nil || string(rest) != "disconnect" {
		t.Fatalf("after Close the peer received %q (%v), want the held bytes and EOF", rest, err)
	}
}
