// Package mqtttest is the MQTT 5 client that tests drive brokers with:
// paho.golang over a TLS connection, every received message kept in an
// Inbox, every wait bounded by testtool.Timeout.
//
//	c := mqtttest.Connect(t, addr, tlsConfig, "dev2")
//	c.MustSubscribe(t, 1, "sensors/#")     // returns once the SUBACK grants it
//	other.MustPublish(t, "sensors/dev1/t", "21.5", 1, false)
//	mqtttest.AssertPayloads(t, "dev2", c.ReceiveUntil(t, "21.5"), "21.5")
//
// A client ID names one session: a test connects each client ID once
// unless it is about taking a session over or resuming it.
package mqtttest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
)

// Client is a connected MQTT 5 client. Its Inbox holds what it received.
type Client struct {
	*Inbox
	// Paho is the paho.golang client, for what the helpers do not cover.
	Paho *paho.Client
	// Conn is the TLS connection under it: its ConnectionState tells
	// whether the handshake resumed a session, and closing it drops the
	// connection without DISCONNECT.
	Conn *tls.Conn

	closeOnce sync.Once
}

// Dial opens a TLS connection to addr with cfg and sends cp, the
// CONNECT. It returns the CONNACK when one came, and an error for any
// failure, TLS or MQTT; when the TLS handshake succeeded the client is
// returned even if CONNECT failed. A connected client is disconnected
// when the test ends.
func Dial(t testing.TB, addr string, cfg *tls.Config, cp *paho.Connect) (*Client, *paho.Connack, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	c := &Client{Inbox: NewInbox(cp.ClientID), Conn: nc.(*tls.Conn)}
	c.Paho = paho.NewClient(paho.ClientConfig{
		ClientID: cp.ClientID,
		// paho writes from several goroutines (acks, pings, calls); a
		// bare tls.Conn would interleave their bytes.
		Conn: packets.NewThreadSafeConn(c.Conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				if p := pr.Packet; !c.discard.Load() {
					c.Put(Message{Topic: p.Topic, Payload: string(p.Payload), QoS: p.QoS, Retain: p.Retain})
				}
				return true, nil
			},
		},
		OnClientError: func(error) {}, // a closed connection shows in Done and in the calls
		PacketTimeout: testtool.Timeout,
	})
	ca, err := c.Paho.Connect(ctx, cp)
	if err != nil {
		c.Conn.Close()
		return c, ca, fmt.Errorf("MQTT CONNECT: %w (CONNACK %s)", err, ConnackCode(ca))
	}
	t.Cleanup(c.Disconnect)
	return c, ca, nil
}

// Connect connects clientID with a clean start and fails the test if
// the broker does not accept it.
func Connect(t testing.TB, addr string, cfg *tls.Config, clientID string) *Client {
	t.Helper()
	c, _, err := Dial(t, addr, cfg, &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("%s: connect to %s: %v", clientID, addr, err)
	}
	return c
}

// ConnackCode is a CONNACK's reason code as text, "none" for no CONNACK.
func ConnackCode(ca *paho.Connack) string {
	if ca == nil {
		return "none"
	}
	return fmt.Sprintf("0x%02x", ca.ReasonCode)
}

// Subscribe subscribes to filters at qos and returns the SUBACK's reason
// codes, one a filter (>= 0x80: refused). It fails the test when no
// SUBACK comes.
func (c *Client) Subscribe(t testing.TB, qos byte, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: qos})
	}
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	sa, err := c.Paho.Subscribe(ctx, s)
	if sa == nil {
		t.Fatalf("%s: SUBSCRIBE %q: no SUBACK: %v", c.Name(), filters, err)
	}
	if len(sa.Reasons) != len(filters) {
		t.Fatalf("%s: SUBSCRIBE %q: SUBACK has %d reason codes", c.Name(), filters, len(sa.Reasons))
	}
	return sa.Reasons
}

// MustSubscribe subscribes and fails the test unless the SUBACK grants
// every filter. Once it returns, the broker delivers what matches.
func (c *Client) MustSubscribe(t testing.TB, qos byte, filters ...string) {
	t.Helper()
	for i, code := range c.Subscribe(t, qos, filters...) {
		if code >= 0x80 {
			t.Fatalf("%s: SUBSCRIBE %s refused with SUBACK 0x%02x; want it granted", c.Name(), filters[i], code)
		}
	}
}

// Publish sends payload on topic and returns the PUBACK's reason code:
// 0 at QoS 0, >= 0x80 when the broker refused the message. It fails the
// test when the message cannot be sent or, at QoS 1, gets no PUBACK.
func (c *Client) Publish(t testing.TB, topic, payload string, qos byte, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	pr, err := c.Paho.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
	if pr != nil {
		return pr.ReasonCode
	}
	if err != nil {
		t.Fatalf("%s: PUBLISH %s: %v", c.Name(), topic, err)
	}
	return 0
}

// MustPublish is Publish that fails the test unless the broker accepts
// the message.
func (c *Client) MustPublish(t testing.TB, topic, payload string, qos byte, retain bool) {
	t.Helper()
	if code := c.Publish(t, topic, payload, qos, retain); code >= 0x80 {
		t.Fatalf("%s: PUBLISH %s refused with PUBACK 0x%02x", c.Name(), topic, code)
	}
}

// Disconnect sends DISCONNECT and closes the connection; calling it
// again does nothing.
func (c *Client) Disconnect() {
	c.closeOnce.Do(func() {
		_ = c.Paho.Disconnect(&paho.Disconnect{ReasonCode: 0})
		c.Conn.Close()
	})
}

// Drop closes the connection without DISCONNECT, as a device that loses
// its network does: the broker sends its will.
func (c *Client) Drop() {
	c.closeOnce.Do(func() { c.Conn.Close() })
}

// Done is closed when the connection has ended, whichever side ended it.
func (c *Client) Done() <-chan struct{} { return c.Paho.Done() }
