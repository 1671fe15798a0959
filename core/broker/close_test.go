package broker

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/ggcore/ggcore/internal/testtool"
)

// dialTLS completes a TLS handshake as device name and sends nothing.
func (f *testFleet) dialTLS(t *testing.T, name string) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", f.broker.Addr().String(), f.clientTLS(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedByBroker tells whether the broker closed conn: a read ends with
// an error other than the client's own deadline passing.
func closedByBroker(conn net.Conn, wait time.Duration) bool {
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	for {
		_, err := conn.Read(make([]byte, 256))
		if err == nil {
			continue
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// A connection that completes TLS but does not send its whole CONNECT
// within ConnectTimeout is closed and counted, whether it sent nothing or
// half a packet; a device that did connect is not bound by that deadline.
func TestConnectDeadline(t *testing.T) {
	f := newTestFleet(t, "silent", "partial", "dev")
	f.limits = Limits{ConnectTimeout: 300 * time.Millisecond}
	f.start(f.group(sub("s1", "dev", "t/#", "dev")))

	dev := f.mustConnect("dev")
	silent := f.dialTLS(t, "silent")
	partial := f.dialTLS(t, "partial")
	if _, err := partial.Write([]byte{0x10, 0x20, 0x00}); err != nil { // CONNECT, 32 bytes to come, 1 sent
		t.Fatal(err)
	}
	for name, conn := range map[string]net.Conn{"silent": silent, "partial": partial} {
		if !closedByBroker(conn, testtool.Timeout) {
			t.Errorf("%s connection still open after %v", name, testtool.Timeout)
		}
	}
	testtool.Eventually(t, "two connect timeouts counted", func() bool { return f.broker.Stats().ConnectTimeouts == 2 })

	// Past the deadline, the connected device still works.
	dev.subscribe(t, "t/#")
	dev.publish(t, "t/1", "still here", false)
	dev.expect(t, "t/1", "still here")
	if got := f.broker.Stats().ConnectTimeouts; got != 2 {
		t.Errorf("ConnectTimeouts = %d after the device worked on; want 2", got)
	}
}

// Close returns, and ends every connection, whatever each is doing: a
// connected MQTT 5 device gets DISCONNECT 0x8B, a connection that
// completed TLS but never sent CONNECT and one that never finished its
// handshake are closed, and a subscriber that stopped reading while
// messages piled up for it is closed after the grace period. mochi's own
// Close would wait for the connection without CONNECT (here, for the
// ten-minute ConnectTimeout) and for the stalled write.
func TestCloseEndsEveryConnection(t *testing.T) {
	f := newTestFleet(t, "dev", "half", "pub", "stalled")
	f.limits = Limits{ConnectTimeout: 10 * time.Minute}
	f.start(f.group(sub("s1", "pub", "bulk/#", "stalled")))

	dev := f.rawConnect(t, "dev")
	t.Cleanup(func() { dev.Close() })
	half := f.dialTLS(t, "half")
	tcp, err := net.Dial("tcp", f.broker.Addr().String()) // no ClientHello
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })

	stalled := f.rawConnect(t, "stalled")
	t.Cleanup(func() { stalled.Close() })
	s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Subscriptions = []packets.SubOptions{{Topic: "bulk/#"}}
	if _, err := s.WriteTo(stalled); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(stalled); err != nil || p.Type != packets.SUBACK {
		t.Fatalf("suback: %v %v", p, err)
	}
	// More than the loopback socket buffers hold: the broker's write to
	// the stalled subscriber blocks, holding the client's lock.
	pub := f.mustConnect("pub")
	payload := strings.Repeat("x", 100<<10)
	for range 100 {
		pub.publish(t, "bulk/data", payload, false)
	}
	testtool.Eventually(t, "messages queued behind the stalled write", func() bool { return f.broker.Stats().QueuedBytes > 0 })

	closed := make(chan error, 1)
	start := time.Now()
	go func() { closed <- f.broker.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		t.Logf("Close took %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(testtool.Timeout):
		buf := make([]byte, 1<<20)
		t.Fatalf("Close did not return within %v; goroutines:\n%s", testtool.Timeout, buf[:runtime.Stack(buf, true)])
	}

	_ = dev.SetReadDeadline(time.Now().Add(testtool.Timeout))
	if p, err := packets.ReadPacket(dev); err != nil || p.Type != packets.DISCONNECT || p.Content.(*packets.Disconnect).ReasonCode != 0x8B {
		t.Errorf("connected device got %v, %v; want DISCONNECT 0x8B (server shutting down)", p, err)
	}
	if !closedByBroker(dev, testtool.Timeout) {
		t.Error("connected device: still open after DISCONNECT")
	}
	for name, conn := range map[string]net.Conn{"TLS without CONNECT": half, "TCP without handshake": tcp} {
		if !closedByBroker(conn, testtool.Timeout) {
			t.Errorf("%s: still open", name)
		}
	}
	// The stalled subscriber's socket holds what was written before the
	// close; reading it all ends at the close.
	if !closedByBroker(stalled, testtool.Timeout) {
		t.Error("stalled subscriber left open")
	}
	if _, err := tls.Dial("tcp", f.broker.Addr().String(), f.clientTLS("dev")); err == nil {
		t.Error("the broker accepts connections after Close")
	}
}
