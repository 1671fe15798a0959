package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// dialer connects devices of a fleet to one broker with mutual TLS.
type dialer struct {
	addr   string
	tlsFor func(device string) (*tls.Config, error)
}

// clientOptions shape one MQTT session.
type clientOptions struct {
	// ReceiveMaximum is announced to the broker (MQTT 5 flow control) and
	// sizes paho's inbound queue; 0 means paho's default (65535).
	ReceiveMaximum uint16
	// OnMessage handles every inbound PUBLISH, from one goroutine.
	OnMessage func(paho.PublishReceived) (bool, error)
	// OnError is told when the connection fails after CONNACK.
	OnError func(error)
}

// mqttClient is a connected MQTT 5 session.
type mqttClient struct {
	*paho.Client
	// ServerReceiveMaximum is how many QoS 1/2 publishes the broker lets
	// this client have unacknowledged (its CONNACK Receive Maximum).
	ServerReceiveMaximum uint16
	// TLS is the negotiated TLS version and cipher suite.
	TLS string

	conn net.Conn // the TLS connection under paho
}

// connect dials the broker, completes the mutual-TLS handshake as device,
// and opens a clean MQTT 5 session whose client ID is the thing name.
func (d dialer) connect(ctx context.Context, device string, o clientOptions) (*mqttClient, error) {
	cfg, err := d.tlsFor(device)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	td := tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	nc, err := td.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, fmt.Errorf("%s: TLS connect to %s: %w", device, d.addr, err)
	}
	tc := nc.(*tls.Conn)
	st := tc.ConnectionState()
	cc := paho.ClientConfig{
		// paho writes from several goroutines; a bare tls.Conn would
		// interleave their bytes.
		Conn:          packets.NewThreadSafeConn(tc),
		PacketTimeout: 30 * time.Second,
		OnClientError: o.OnError,
	}
	if o.OnMessage != nil {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){o.OnMessage}
	}
	c := paho.NewClient(cc)
	cp := &paho.Connect{ClientID: device, KeepAlive: 60, CleanStart: true}
	if o.ReceiveMaximum > 0 {
		rm := o.ReceiveMaximum
		cp.Properties = &paho.ConnectProperties{ReceiveMaximum: &rm}
	}
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		if ack != nil {
			return nil, fmt.Errorf("%s: CONNECT refused (reason 0x%02x): %w", device, ack.ReasonCode, err)
		}
		return nil, fmt.Errorf("%s: MQTT connect: %w", device, err)
	}
	srm := uint16(65535)
	if ack.Properties != nil && ack.Properties.ReceiveMaximum != nil {
		srm = *ack.Properties.ReceiveMaximum
	}
	return &mqttClient{
		Client:               c,
		ServerReceiveMaximum: srm,
		TLS:                  tls.VersionName(st.Version) + " " + tls.CipherSuiteName(st.CipherSuite),
		conn:                 tc,
	}, nil
}

// subscribe subscribes to one filter and fails unless the broker grants it.
func (c *mqttClient) subscribe(ctx context.Context, filter string, qos byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ack, err := c.Subscribe(ctx, &paho.Subscribe{
		Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}},
	})
	if err != nil {
		return fmt.Errorf("%s: SUBSCRIBE %s: %w", c.ClientID(), filter, err)
	}
	if len(ack.Reasons) != 1 || ack.Reasons[0] >= 0x80 {
		return fmt.Errorf("%s: SUBSCRIBE %s refused: SUBACK reasons %v", c.ClientID(), filter, ack.Reasons)
	}
	return nil
}

// close sends DISCONNECT and waits (briefly) for the client to shut down.
// A broker that does not read cannot hold it: the write has a deadline and
// the connection is closed after a few seconds in any case.
func (c *mqttClient) close() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		c.abort()
	}
}

// abort closes the connection under paho, which fails any write blocked
// on it (tls.Conn.Close does not wait for a write in progress).
func (c *mqttClient) abort() { _ = c.conn.Close() }
