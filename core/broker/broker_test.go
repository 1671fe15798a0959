package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

const arnPrefix = "arn:aws:iot:us-east-1:000000000000:thing/"

// testFleet is a CA with one certificate per device, and a running broker.
type testFleet struct {
	t       *testing.T
	pool    *x509.CertPool
	server  tls.Certificate
	certs   map[string]tls.Certificate
	devices []Thing
	broker  *Broker
	// upstream, when set before start, takes messages routed to cloud.
	upstream Upstream
	// limits, when set before start, are the broker's limits.
	limits Limits
}

func newTestFleet(t *testing.T, names ...string) *testFleet {
	t.Helper()
	ca, err := pki.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f := &testFleet{t: t, pool: x509.NewCertPool(), certs: map[string]tls.Certificate{}}
	f.pool.AddCert(ca.Cert)
	issue := func(cn string, usage pki.Usage) tls.Certificate {
		key, err := keyspec.ECP256.Generate()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: cn, DNSNames: []string{"localhost"}, Usage: usage, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	f.server = issue("core", pki.ServerAuth)
	for _, n := range names {
		c := issue(n, pki.ClientAuth)
		f.certs[n] = c
		f.devices = append(f.devices, Thing{Name: n, ARN: arnPrefix + n, CertificateID: pki.CertificateID(c.Certificate[0])})
	}
	return f
}

func (f *testFleet) group(subs ...router.Subscription) Group {
	f.t.Helper()
	table, err := router.New(subs)
	if err != nil {
		f.t.Fatal(err)
	}
	return Group{ID: "g1", Devices: append([]Thing(nil), f.devices...), Table: table}
}

func (f *testFleet) start(g Group) {
	f.t.Helper()
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile: tlsconf.Strict, ClientCAs: f.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := New(Options{Listener: ln, TLS: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Upstream: f.upstream, Limits: f.limits}, g)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.broker = b
	f.t.Cleanup(func() { b.Close() })
}

// client is a connected MQTT 5 device; its Inbox holds what it received.
type client struct {
	*mqtttest.Client
}

// clientTLS is the TLS configuration device name connects with.
func (f *testFleet) clientTLS(name string) *tls.Config {
	return &tls.Config{RootCAs: f.pool, ServerName: "localhost", Certificates: []tls.Certificate{f.certs[name]}}
}

func (f *testFleet) connect(name, clientID string) (*client, *paho.Connack, error) {
	f.t.Helper()
	c, ack, err := mqtttest.Dial(f.t, f.broker.Addr().String(), f.clientTLS(name),
		&paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30})
	if err != nil {
		return nil, ack, err
	}
	return &client{c}, ack, nil
}

func (f *testFleet) mustConnect(name string) *client {
	f.t.Helper()
	c, _, err := f.connect(name, name)
	if err != nil {
		f.t.Fatalf("connect %s: %v", name, err)
	}
	return c
}

// subscribe subscribes to filter at QoS 1 and returns the SUBACK's
// reason code.
func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	return c.Subscribe(t, 1, filter)[0]
}

// publish sends payload on topic at QoS 1 and waits for the PUBACK.
func (c *client) publish(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	c.MustPublish(t, topic, payload, 1, retain)
}

// expect asserts that the next message received is want (topic, payload).
func (c *client) expect(t *testing.T, topic, payload string) mqtttest.Message {
	t.Helper()
	m, ok := c.TryNext(testtool.Timeout)
	if !ok {
		t.Fatalf("no message on %s (want %q)", topic, payload)
	}
	if m.Topic != topic || m.Payload != payload {
		t.Fatalf("received %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
	}
	return m
}

func sub(id, src, subject, dst string) router.Subscription {
	return router.Subscription{ID: id, Source: arnPrefix + src, Subject: subject, Target: arnPrefix + dst}
}

func TestDeviceReceivesOnlyWhatTheTableSends(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2", "dev3")
	// dev3's a/x is routed, but to dev1 only.
	f.start(f.group(sub("s1", "dev1", "a/#", "dev2"), sub("s2", "dev3", "a/#", "dev1")))
	dev1, dev2, dev3 := f.mustConnect("dev1"), f.mustConnect("dev2"), f.mustConnect("dev3")
	if code := dev2.subscribe(t, "#"); code != 1 {
		t.Fatalf("SUBSCRIBE # granted %#x, want QoS 1", code)
	}
	dev3.publish(t, "a/x", "from dev3", false)
	dev1.publish(t, "b/x", "outside subject", false)
	dev1.publish(t, "a/x", "routed", false)
	dev2.expect(t, "a/x", "routed")
	if s := f.broker.Stats(); s.Unrouted != 1 {
		t.Errorf("unrouted = %d, want 1", s.Unrouted)
	}
}

func TestRetainedReplayFollowsTheTable(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2", "dev3")
	f.start(f.group(sub("s1", "dev1", "a/#", "dev2"), sub("s2", "dev2", "a/#", "dev3")))
	dev1 := f.mustConnect("dev1")
	dev1.publish(t, "a/x", "retained", true)
	dev3 := f.mustConnect("dev3")
	dev3.subscribe(t, "a/#")
	dev2 := f.mustConnect("dev2")
	dev2.subscribe(t, "a/#")
	if p := dev2.expect(t, "a/x", "retained"); !p.Retain {
		t.Error("replayed message has no retain flag")
	}
	// dev2 -> dev3 is allowed, so this reaches dev3 first unless the
	// retained message from dev1 leaked to it.
	dev2.publish(t, "a/y", "marker", false)
	dev3.expect(t, "a/y", "marker")
}

func TestSubscribeRefusedWhenNothingCanMatch(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	f.start(f.group(sub("s1", "dev1", "a/#", "dev2")))
	dev2, ack, err := f.connect("dev2", "dev2")
	if err != nil {
		t.Fatal(err)
	}
	if ack.Properties == nil || ack.Properties.SharedSubAvailable {
		t.Error("CONNACK does not say shared subscriptions are unavailable")
	}
	for _, filter := range []string{"b/#", "$SYS/#"} {
		if code := dev2.subscribe(t, filter); code < 0x80 {
			t.Errorf("SUBSCRIBE %s granted %#x, want refused", filter, code)
		}
	}
	dev1 := f.mustConnect("dev1")
	if code := dev1.subscribe(t, "a/#"); code < 0x80 { // dev1 is only a source
		t.Errorf("SUBSCRIBE a/# by dev1 granted %#x, want refused", code)
	}
}

func TestConnectRefusedForWrongClientID(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	f.start(f.group())
	_, ack, err := f.connect("dev1", "dev2")
	if err == nil {
		t.Fatal("dev1's certificate connected as dev2")
	}
	if ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("CONNACK = %+v, want reason 0x87", ack)
	}
	if s := f.broker.Stats(); s.Refused != 1 {
		t.Errorf("refused = %d, want 1", s.Refused)
	}
}

func TestSetGroupDisconnectsRemovedDevices(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	f.start(f.group(sub("s1", "dev1", "a/#", "dev2")))
	dev2 := f.mustConnect("dev2")
	g := f.group()
	g.Devices = g.Devices[:1] // dev2 leaves the group
	if err := f.broker.SetGroup(g); err != nil {
		t.Fatal(err)
	}
	select {
	case <-dev2.Done():
	case <-time.After(testtool.Timeout):
		t.Fatal("removed device still connected")
	}
	if _, ack, err := f.connect("dev2", "dev2"); err == nil || ack == nil || ack.ReasonCode != 0x87 {
		t.Fatalf("removed device reconnected: ack %+v err %v", ack, err)
	}
	f.mustConnect("dev1") // still in the group
}

// TestSlowSubscriberLosesNothing floods a subscriber that reads slowly
// from two publishers, QoS 1 ones with many messages in flight: the broker
// must slow the publishers down rather than drop messages.
func TestSlowSubscriberLosesNothing(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) {
			f := newTestFleet(t, "pub1", "pub2", "sub")
			f.start(f.group(sub("s1", "pub1", "flood/#", "sub"), sub("s2", "pub2", "flood/#", "sub")))
			const perPublisher = 10000
			var got atomic.Int64
			subscriber := f.mustConnect("sub")
			subscriber.Discard() // the test counts what arrives itself
			subscriber.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) {
				if got.Add(1)%50 == 0 {
					time.Sleep(time.Millisecond) // a slow device
				}
				return true, nil
			})
			subscriber.MustSubscribe(t, qos, "flood/#")
			var wg sync.WaitGroup
			for _, name := range []string{"pub1", "pub2"} {
				publisher := f.mustConnect(name)
				inflight := make(chan struct{}, 200) // QoS 1: up to 200 unacknowledged each
				for i := 0; i < perPublisher; i++ {
					inflight <- struct{}{}
					wg.Add(1)
					go func() {
						defer func() { <-inflight; wg.Done() }()
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						if _, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: "flood/" + name, QoS: qos, Payload: make([]byte, 256)}); err != nil {
							t.Errorf("%s: publish: %v", name, err)
						}
					}()
				}
			}
			wg.Wait()
			// Wait for the tail; give up once nothing has arrived for 3 s.
			for last := int64(-1); got.Load() < 2*perPublisher && got.Load() != last; {
				last = got.Load()
				time.Sleep(3 * time.Second)
			}
			if n, s := got.Load(), f.broker.Stats(); n != 2*perPublisher || s.Dropped != 0 || s.InflightDropped != 0 {
				t.Fatalf("received %d of %d; broker stats %+v", n, 2*perPublisher, s)
			}
		})
	}
}

func TestCloudRoutes(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	type msg struct{ topic, payload string }
	var mu sync.Mutex
	var up []msg
	failing := false
	f.upstream = func(topic string, payload []byte) error {
		mu.Lock()
		defer mu.Unlock()
		if failing {
			return errors.New("disk full")
		}
		up = append(up, msg{topic, string(payload)})
		return nil
	}
	f.start(f.group(
		router.Subscription{ID: "up", Source: arnPrefix + "dev1", Subject: "telemetry/#", Target: CloudSource},
		router.Subscription{ID: "down", Source: CloudSource, Subject: "commands/dev2/#", Target: arnPrefix + "dev2"},
	))
	dev1, dev2 := f.mustConnect("dev1"), f.mustConnect("dev2")
	if code := dev2.subscribe(t, "commands/#"); code >= 0x80 {
		t.Fatalf("SUBACK %#x", code)
	}

	// dev1 -> cloud: handed upstream before dev1's PUBACK (publish waits for it).
	dev1.publish(t, "telemetry/t", "21.5", false)
	dev1.publish(t, "other/t", "not for the cloud", false)
	mu.Lock()
	if len(up) != 1 || up[0] != (msg{"telemetry/t", "21.5"}) {
		t.Errorf("upstream got %v; want only telemetry/t", up)
	}
	failing = true
	mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	resp, err := dev1.Paho.Publish(ctx, &paho.Publish{Topic: "telemetry/t", QoS: 1, Payload: []byte("refused")})
	if err == nil && (resp == nil || resp.ReasonCode != 0x97) {
		t.Errorf("upstream refused the message, yet the device got PUBACK %+v; want 0x97", resp)
	}

	// cloud -> dev2, by the table only.
	if err := f.broker.FromCloud("commands/dev1/x", []byte("not routed"), 1); err != nil {
		t.Fatal(err)
	}
	if err := f.broker.FromCloud("commands/dev2/reboot", []byte("now"), 1); err != nil {
		t.Fatal(err)
	}
	if p := dev2.expect(t, "commands/dev2/reboot", "now"); p.QoS != 1 {
		t.Errorf("delivered at QoS %d; want 1", p.QoS)
	}
}
