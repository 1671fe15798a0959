package iotbroker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestCloseEndsEveryConnection: Close returns, and ends every
// connection, whatever each is doing: an MQTT 5 client gets DISCONNECT
// 0x8B, an MQTT 3.1.1 client is closed, a connection that has not sent
// CONNECT is closed, a subscriber that stopped reading while messages
// piled up is closed after the grace period, and clients keep connecting
// and leaving while the broker closes.
func TestCloseEndsEveryConnection(t *testing.T) {
	e := newEnv(t)
	dev := e.thing("dev", allow("iot:*", "*"))
	b := e.startOpen(0)
	var closing atomic.Bool
	t.Cleanup(func() {
		if !closing.Load() {
			b.Close()
		}
	})

	c5, rc := e.connectRaw(dev, "idle5", 5)
	if rc != 0 {
		t.Fatalf("MQTT 5 CONNACK %#x", rc)
	}
	c3, rc := e.connect3(dev, "idle3")
	if rc != 0 {
		t.Fatalf("MQTT 3.1.1 CONNACK %#x", rc)
	}
	preConnect, err := e.dial(dev) // TLS, no CONNECT
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { preConnect.Close() })

	// More than the loopback socket buffers hold: the broker's write to
	// the stalled subscriber blocks, holding the client's lock.
	stalled, rc := e.connectRaw(dev, "stalled", 5)
	if rc != 0 {
		t.Fatalf("stalled CONNACK %#x", rc)
	}
	stalled.subscribe(1, "bulk/#")
	pub, _, err := e.connect5(dev, "pub")
	if err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 100<<10)
	for range 200 {
		pub.Publish(t, "bulk/data", payload, 0, false)
	}
	// Acknowledged once the broker has handled the messages before it.
	pub.MustPublish(t, "bulk/end", "", 1, false)

	// Clients connecting and leaving, each with its own client ID.
	stop := make(chan struct{})
	var churned atomic.Int64
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := connectAndLeave(e.broker.Addr().String(), e.clientTLS(dev), fmt.Sprintf("churn-%d-%d", g, i)); err != nil {
					return // the broker is closed
				}
				churned.Add(1)
			}
		}()
	}
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { close(stop) })
	testtool.Eventually(t, "clients connecting and leaving", func() bool { return churned.Load() >= 10 })

	closed := make(chan error, 1)
	closing.Store(true)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(testtool.Timeout):
		buf := make([]byte, 1<<20)
		t.Fatalf("Close did not return within %v; goroutines:\n%s", testtool.Timeout, buf[:runtime.Stack(buf, true)])
	}

	if pk, err := c5.read(); err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrServerShuttingDown.Code {
		t.Errorf("MQTT 5 client got %+v (reason %#x), %v; want DISCONNECT 0x8B", pk.FixedHeader, pk.ReasonCode, err)
	}
	if closed, got := c5.closed(); !closed || len(got) > 0 {
		t.Errorf("MQTT 5 client after DISCONNECT: closed %v, packets %+v; want closed, none", closed, got)
	}
	if closed, got := c3.closed(); !closed || len(got) > 0 {
		t.Errorf("MQTT 3.1.1 client: closed %v, packets %+v; want closed, none", closed, got)
	}
	preConnect.SetReadDeadline(time.Now().Add(testtool.Timeout))
	if _, err := preConnect.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("connection without CONNECT: read %v; want it closed", err)
	}
	if closed, _ := stalled.closed(); !closed {
		t.Error("stalled subscriber left open")
	}
	e.waitLog(t, "mqtt clients not disconnected within the grace period")
	if _, err := e.dial(dev); err == nil {
		t.Error("the broker accepts connections after Close")
	}
}

// TestCloseTwice: Close is safe to call again, and after New alone.
func TestCloseTwice(t *testing.T) {
	e := newEnv(t)
	b := e.startOpen(0)
	for i := range 2 {
		if err := b.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nb, err := New(Options{Listener: ln, TLS: e.serverTLS(), Store: e.st})
	if err != nil {
		t.Fatal(err)
	}
	if err := nb.Close(); err != nil {
		t.Errorf("Close of a broker never started: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener of a closed broker accepts connections")
	}
}

// connectAndLeave connects clientID over MQTT 5 and drops the connection
// once the CONNACK arrives.
func connectAndLeave(addr string, cfg *tls.Config, clientID string) error {
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: testtool.Timeout}, Config: cfg}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(testtool.Timeout))
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID}}
	if err := pk.ConnectEncode(&buf); err != nil {
		return err
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		return err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
