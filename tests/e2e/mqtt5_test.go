package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

const (
	deliveryTimeout = 5 * time.Second        // for a message that must arrive
	settle          = 300 * time.Millisecond // extra wait after the control message
)

// message is what a client received.
type message struct {
	topic   string
	payload string
	qos     byte
	retain  bool
}

func (m message) String() string {
	return fmt.Sprintf("%s %q (qos %d, retain %t)", m.topic, m.payload, m.qos, m.retain)
}

// client5 is an MQTT 5 device connection (paho.golang over mutual TLS).
type client5 struct {
	name string
	conn net.Conn // the TLS connection, to drop it without DISCONNECT
	// resumed tells whether the TLS handshake resumed an earlier session.
	resumed bool
	c       *paho.Client
	msgs    chan message
}

// clientTLS is the device side of mutual TLS: the group CA (which signs the
// MQTT server certificate) as root, server name localhost.
func (f *fleet) clientTLS(t *testing.T, cert tls.Certificate) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(f.groupCA())
	if err != nil {
		t.Fatalf("read group CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", f.groupCA())
	}
	return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}}
}

// dial5 opens a TLS connection with cert and sends CONNECT with clientID
// (and will, if not nil). It returns the CONNACK when one came; err is set
// for any failure, TLS or MQTT. The client is closed at cleanup.
func (f *fleet) dial5(t *testing.T, cert tls.Certificate, clientID string, will *paho.WillMessage) (*client5, *paho.Connack, error) {
	t.Helper()
	return f.dial5With(t, f.clientTLS(t, cert), &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30, WillMessage: will})
}

// dial5With is dial5 with the TLS configuration and CONNECT packet given.
// When the TLS handshake succeeded, the returned client is not nil even if
// CONNECT failed (its resumed field tells whether TLS resumed a session).
func (f *fleet) dial5With(t *testing.T, tlsCfg *tls.Config, cp *paho.Connect) (*client5, *paho.Connack, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: tlsCfg}
	conn, err := d.DialContext(ctx, "tcp", f.addr())
	if err != nil {
		return nil, nil, fmt.Errorf("TLS: %w", err)
	}
	clientID := cp.ClientID
	cl := &client5{
		name: clientID, conn: conn, msgs: make(chan message, 256),
		resumed: conn.(*tls.Conn).ConnectionState().DidResume,
	}
	cl.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) {
				p := pr.Packet
				select {
				case cl.msgs <- message{topic: p.Topic, payload: string(p.Payload), qos: p.QoS, retain: p.Retain}:
				default: // more than any test sends; the exact-content checks catch it
				}
				return true, nil
			},
		},
		OnClientError: func(error) {},
		PacketTimeout: 10 * time.Second,
	})
	ca, err := cl.c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return cl, ca, fmt.Errorf("MQTT CONNECT: %w", err)
	}
	t.Cleanup(func() {
		_ = cl.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		conn.Close()
	})
	return cl, ca, nil
}

// connect5 connects device dev with its own certificate and client ID,
// failing the test if that does not work.
func (f *fleet) connect5(t *testing.T, dev string) *client5 {
	t.Helper()
	cl, ca, err := f.dial5(t, f.identity(dev).tlsCertificate(t), dev, nil)
	if err != nil {
		t.Fatalf("%s: connect: %v (CONNACK %v)", dev, err, connackCode(ca))
	}
	return cl
}

func connackCode(ca *paho.Connack) string {
	if ca == nil {
		return "none"
	}
	return fmt.Sprintf("0x%02x", ca.ReasonCode)
}

// subscribe subscribes and returns the SUBACK reason code (>= 0x80: refused).
func (c *client5) subscribe(t *testing.T, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil {
		t.Fatalf("%s: SUBSCRIBE %s: no SUBACK: %v", c.name, filter, err)
	}
	if len(sa.Reasons) != 1 {
		t.Fatalf("%s: SUBSCRIBE %s: SUBACK has %d reason codes, want 1", c.name, filter, len(sa.Reasons))
	}
	return sa.Reasons[0]
}

// mustSubscribe subscribes and fails the test unless the SUBACK grants it.
func (c *client5) mustSubscribe(t *testing.T, filter string, qos byte) {
	t.Helper()
	if code := c.subscribe(t, filter, qos); code >= 0x80 {
		t.Fatalf("%s: SUBSCRIBE %s refused with SUBACK 0x%02x; want it granted", c.name, filter, code)
	}
}

// publish publishes and, for QoS 1, waits for the PUBACK; it returns the
// PUBACK reason code (0 for QoS 0). A refused publish is not a test
// failure: the caller decides what the core may answer.
func (c *client5) publish(t *testing.T, topic, payload string, qos byte, retain bool) (byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain})
	if pr != nil {
		return pr.ReasonCode, err
	}
	return 0, err
}

// mustPublish publishes and fails the test if the publish is not accepted.
func (c *client5) mustPublish(t *testing.T, topic, payload string, qos byte, retain bool) {
	t.Helper()
	if _, err := c.publish(t, topic, payload, qos, retain); err != nil {
		t.Fatalf("%s: PUBLISH %s: %v", c.name, topic, err)
	}
}

// receiveUntil collects messages until one with payload control arrives,
// then for settle longer, and returns them all in order. It fails the test
// if control does not arrive within deliveryTimeout.
func (c *client5) receiveUntil(t *testing.T, control string) []message {
	t.Helper()
	return collectUntil(t, c.name, c.msgs, control)
}

// expectNothing asserts that nothing arrives within settle.
func (c *client5) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case m := <-c.msgs:
		t.Errorf("%s received %v; want nothing", c.name, m)
	case <-time.After(settle):
	}
}

func collectUntil(t *testing.T, who string, ch <-chan message, control string) []message {
	t.Helper()
	var got []message
	timeout := time.After(deliveryTimeout)
	for {
		select {
		case m := <-ch:
			got = append(got, m)
			if m.payload == control {
				end := time.After(settle)
				for {
					select {
					case m := <-ch:
						got = append(got, m)
					case <-end:
						return got
					}
				}
			}
		case <-timeout:
			t.Fatalf("%s: control message %q not delivered within %v; received: %v", who, control, deliveryTimeout, got)
			return nil
		}
	}
}

// assertReceived asserts that got holds exactly the payloads want, in order.
func assertReceived(t *testing.T, who string, got []message, want ...string) {
	t.Helper()
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, m.payload)
	}
	if strings.Join(payloads, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("%s received %v; want exactly the payloads %q", who, got, want)
	}
}
