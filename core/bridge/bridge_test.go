package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/spool"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// The bridge's tests run it against a real MQTT 5 broker, mochi-mqtt,
// started in the test on 127.0.0.1 with mutual TLS: the cloud, which the
// tests stop and start again on the same port for outages.

// clientID is the bridge's client ID (the core's thing name).
const clientID = "core1"

// notifyTopic is the control topic the tests give the bridge.
const notifyTopic = "$aws/things/core1-gda/deployment/notify"

// fixture is a cloud broker, the bridge's spool, what the bridge
// delivered inward, and the bridge's log.
type fixture struct {
	addr      string // the broker's address, kept across restarts
	serverTLS *tls.Config
	clientTLS *tls.Config
	cloud     *cloudHook
	spool     *spool.Spool
	inbox     *mqtttest.Inbox // messages the bridge delivered to the core
	notes     *mqtttest.Inbox // payloads of notifyTopic
	log       *testtool.Buffer

	mu  sync.Mutex
	srv *mqtt.Server   // nil while the cloud is down
	ln  *connsListener // srv's listener
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("cloud CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	pair := func(l pki.Leaf) *tls.Certificate {
		key, err := keyspec.ECP256.Generate()
		if err != nil {
			t.Fatal(err)
		}
		l.NotAfter = time.Now().Add(time.Hour)
		cert, err := ca.Issue(key.Public(), l)
		if err != nil {
			t.Fatal(err)
		}
		tc, err := tlsconf.Certificate(key, []*x509.Certificate{cert})
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	server := pair(pki.Leaf{CommonName: "cloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: pki.ServerAuth})
	client := pair(pki.Leaf{CommonName: clientID, Usage: pki.ClientAuth})
	sp, err := spool.Open(spool.Options{Path: filepath.Join(t.TempDir(), "cloud.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	f := &fixture{
		addr: "127.0.0.1:0",
		serverTLS: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*server},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
		},
		clientTLS: tlsconf.Client(pool, "127.0.0.1", func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return client, nil
		}),
		cloud: &cloudHook{subscribed: map[string]bool{}},
		spool: sp,
		inbox: mqtttest.NewInbox("core"),
		notes: mqtttest.NewInbox("notifications"),
		log:   new(testtool.Buffer),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bridge log:\n%s", f.log.String())
		}
	})
	f.startCloud(t)
	return f
}

// startCloud starts the cloud broker on f.addr (a fresh port the first
// time, the same port after).
func (f *fixture) startCloud(t *testing.T) {
	t.Helper()
	tcp, err := net.Listen("tcp", f.addr)
	if err != nil {
		t.Fatalf("cloud broker: %v", err)
	}
	f.addr = tcp.Addr().String()
	ln := &connsListener{Listener: tcp}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, h := range []mqtt.Hook{new(auth.AllowHook), f.cloud} {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddListener(listeners.NewNet("cloud", tls.NewListener(ln, f.serverTLS))); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.srv, f.ln = srv, ln
	f.mu.Unlock()
	t.Cleanup(func() { f.stopCloud(t) })
}

// stopCloud stops the cloud broker, dropping the bridge's connection and
// its subscriptions; it does nothing when the broker is down.
//
// mochi's Close disconnects the clients it has, then waits for every
// connection it accepted to end: one accepted a moment before (the
// bridge reconnects every 100 ms while the cloud is down) becomes a
// client after that and is never disconnected. So the listener is
// closed first, which drops every connection it accepted, and Close,
// bounded, only waits for mochi's goroutines to see that.
func (f *fixture) stopCloud(t *testing.T) {
	f.mu.Lock()
	srv, ln := f.srv, f.ln
	f.srv, f.ln = nil, nil
	f.mu.Unlock()
	if srv == nil {
		return
	}
	ln.Close()
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(testtool.Timeout):
		t.Errorf("the cloud broker did not stop within %v of its connections being dropped", testtool.Timeout)
	}
	f.cloud.mu.Lock()
	clear(f.cloud.subscribed)
	f.cloud.mu.Unlock()
}

// connsListener is a listener that remembers the connections it accepted,
// and drops them when it is closed.
type connsListener struct {
	net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

func (l *connsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return c, nil
}

// Close stops accepting and drops every connection accepted.
func (l *connsListener) Close() error {
	l.mu.Lock()
	conns := l.conns
	l.conns, l.closed = nil, true
	l.mu.Unlock()
	err := l.Listener.Close()
	for _, c := range conns {
		c.Close()
	}
	return err
}

// publish publishes a message in the cloud, as a cloud application would.
func (f *fixture) publish(t *testing.T, topic, payload string) {
	t.Helper()
	f.mu.Lock()
	srv := f.srv
	f.mu.Unlock()
	if err := srv.Publish(topic, []byte(payload), false, 1); err != nil {
		t.Fatalf("publish %s in the cloud: %v", topic, err)
	}
}

// run makes a bridge to the cloud broker and starts it; it stops when
// the test ends.
func (f *fixture) run(t *testing.T, filters ...string) *Bridge {
	t.Helper()
	b := f.newBridge(t)
	b.SetFilters(filters)
	f.start(t, b)
	return b
}

// newBridge makes a bridge to the cloud broker.
func (f *fixture) newBridge(t *testing.T) *Bridge {
	t.Helper()
	_, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	b, err := New(Options{
		Host: "127.0.0.1", Port: p, ClientID: clientID, KeepAlive: 30,
		MaxRetryInterval: 100 * time.Millisecond,
		TLS:              f.clientTLS,
		Spool:            f.spool,
		Deliver: func(topic string, payload []byte, qos byte) error {
			f.inbox.Put(mqtttest.Message{Topic: topic, Payload: string(payload), QoS: qos})
			return nil
		},
		Control: map[string]func([]byte){notifyTopic: func(p []byte) {
			f.notes.Put(mqtttest.Message{Topic: notifyTopic, Payload: string(p)})
		}},
		Log: slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// start runs b until the test ends.
func (f *fixture) start(t *testing.T, b *Bridge) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(testtool.Timeout):
			t.Errorf("Run did not return within %v of its context's end", testtool.Timeout)
		}
	})
}

// spoolMessage spools one message for the cloud, as the broker does.
func (f *fixture) spoolMessage(t *testing.T, b *Bridge, topic, payload string) {
	t.Helper()
	if err := b.Publish(topic, []byte(payload)); err != nil {
		t.Fatalf("Publish %s: %v", topic, err)
	}
}

// waitReceived waits until the cloud received n messages from the bridge.
func (f *fixture) waitReceived(t *testing.T, n int) {
	t.Helper()
	testtool.Eventually(t, fmt.Sprintf("the cloud receives %d messages", n), func() bool { return len(f.cloud.payloads()) >= n })
}

// waitSpoolEmpty waits until every spooled message was acknowledged.
func (f *fixture) waitSpoolEmpty(t *testing.T) {
	t.Helper()
	testtool.Eventually(t, "the spool empties", func() bool { return f.spool.Stats().Messages == 0 })
}

// waitSubscribed waits until the bridge's subscriptions in the cloud are
// exactly filters.
func (f *fixture) waitSubscribed(t *testing.T, filters ...string) {
	t.Helper()
	slices.Sort(filters)
	testtool.Eventually(t, fmt.Sprintf("the bridge is subscribed to %q", filters), func() bool {
		return slices.Equal(f.cloud.filters(), filters)
	})
}

// cloudHook records, in the cloud broker, what the bridge publishes and
// subscribes to, and can withhold or refuse its PUBACKs.
type cloudHook struct {
	mqtt.HookBase
	mu         sync.Mutex
	received   []string        // payloads published by the bridge, in arrival order
	subscribed map[string]bool // the bridge's filters
	noAck      bool            // messages are ignored: no PUBACK
	refuse     string          // messages on this topic are refused (0x87)
}

func (h *cloudHook) ID() string { return "cloud-test" }

func (h *cloudHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnSubscribed || b == mqtt.OnUnsubscribed
}

// OnPublish runs before the broker sends the PUBACK. It never blocks:
// mochi's Close waits for the connection's goroutine, which runs it. A
// withheld PUBACK is mochi's ErrRejectPacket (the message is dropped
// unanswered), not a wait.
func (h *cloudHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	h.mu.Lock()
	h.received = append(h.received, string(pk.Payload))
	noAck, refuse := h.noAck, h.refuse
	h.mu.Unlock()
	switch {
	case noAck:
		return pk, packets.ErrRejectPacket
	case pk.TopicName == refuse:
		return pk, packets.ErrNotAuthorized
	}
	return pk, nil
}

func (h *cloudHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, f := range pk.Filters {
		if i < len(codes) && codes[i] < 0x80 {
			h.subscribed[f.Filter] = true
		}
	}
}

func (h *cloudHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range pk.Filters {
		delete(h.subscribed, f.Filter)
	}
}

func (h *cloudHook) payloads() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.received)
}

func (h *cloudHook) filters() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := make([]string, 0, len(h.subscribed))
	for f := range h.subscribed {
		fs = append(fs, f)
	}
	slices.Sort(fs)
	return fs
}

// set changes the hook's behaviour.
func (h *cloudHook) set(noAck bool, refuse string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noAck, h.refuse = noAck, refuse
}

// numbered are n payloads "<prefix>000", "<prefix>001", …
func numbered(prefix string, from, n int) []string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("%s%03d", prefix, from+i)
	}
	return ps
}

func assertPayloads(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("the cloud received %d messages %q;\nwant %d messages %q, in that order", len(got), got, len(want), want)
	}
}

func TestBridgeDrainsTheSpoolInOrder(t *testing.T) {
	f := newFixture(t)
	b := f.newBridge(t)
	// Spooled before the bridge runs (as after a restart of the core),
	// more than one read of the spool.
	before := numbered("m", 0, 2*drainBatch+10)
	for _, p := range before {
		f.spoolMessage(t, b, "telemetry/dev1", p)
	}
	if n := f.spool.Stats().Messages; n != len(before) {
		t.Fatalf("spool holds %d messages, want %d", n, len(before))
	}
	f.start(t, b)
	// Spooled while it runs.
	after := numbered("m", len(before), 20)
	for _, p := range after {
		f.spoolMessage(t, b, "telemetry/dev1", p)
	}
	want := slices.Concat(before, after)
	f.waitReceived(t, len(want))
	f.waitSpoolEmpty(t)
	assertPayloads(t, f.cloud.payloads(), want)
}

func TestBridgeRemovesAMessageOnlyAfterItsPuback(t *testing.T) {
	f := newFixture(t)
	f.cloud.set(true, "")
	b := f.run(t)
	f.spoolMessage(t, b, "telemetry/dev1", "m1")
	f.waitReceived(t, 1)
	// The cloud has the message but does not acknowledge it.
	if n := f.spool.Stats().Messages; n != 1 {
		t.Fatalf("spool holds %d messages while the PUBACK is withheld; want 1", n)
	}
	// The connection drops before the PUBACK: the message stays in the
	// spool and goes again once the cloud is back.
	f.stopCloud(t)
	if n := f.spool.Stats().Messages; n != 1 {
		t.Fatalf("spool holds %d messages after the connection dropped before the PUBACK; want 1", n)
	}
	f.cloud.set(false, "")
	f.startCloud(t)
	f.waitReceived(t, 2)
	f.waitSpoolEmpty(t)
	assertPayloads(t, f.cloud.payloads(), []string{"m1", "m1"})
}

func TestBridgeDropsAMessageTheCloudRefuses(t *testing.T) {
	f := newFixture(t)
	f.cloud.set(false, "denied/dev1")
	b := f.run(t)
	f.spoolMessage(t, b, "denied/dev1", "refused")
	f.spoolMessage(t, b, "telemetry/dev1", "after")
	f.waitReceived(t, 2)
	f.waitSpoolEmpty(t)
	assertPayloads(t, f.cloud.payloads(), []string{"refused", "after"})
	if n := b.Refused(); n != 1 {
		t.Errorf("Refused() = %d, want 1", n)
	}
}

func TestBridgeSurvivesAnUpstreamOutage(t *testing.T) {
	f := newFixture(t)
	b := f.run(t, "commands/#")
	f.waitSubscribed(t, "commands/#", notifyTopic)
	first := numbered("m", 0, 10)
	for _, p := range first {
		f.spoolMessage(t, b, "telemetry/dev1", p)
	}
	f.waitReceived(t, len(first))
	f.waitSpoolEmpty(t)

	f.stopCloud(t)
	during := numbered("m", len(first), 30)
	for _, p := range during {
		f.spoolMessage(t, b, "telemetry/dev1", p)
	}
	if n := f.spool.Stats().Messages; n != len(during) {
		t.Fatalf("spool holds %d messages while the cloud is down; want %d", n, len(during))
	}

	f.startCloud(t)
	after := numbered("m", len(first)+len(during), 10)
	for _, p := range after {
		f.spoolMessage(t, b, "telemetry/dev1", p)
	}
	want := slices.Concat(first, during, after)
	f.waitReceived(t, len(want))
	f.waitSpoolEmpty(t)
	assertPayloads(t, f.cloud.payloads(), want)

	// The upstream subscriptions are back too.
	f.waitSubscribed(t, "commands/#", notifyTopic)
	f.publish(t, "commands/dev2/light", "on")
	f.inbox.Expect(t, "commands/dev2/light", "on")
}

func TestBridgeSubscribesCloudSourcedFiltersAndDeliversInward(t *testing.T) {
	f := newFixture(t)
	f.run(t, "commands/#", "config/+/set", "commands/#")
	f.waitSubscribed(t, "commands/#", "config/+/set", notifyTopic)

	f.publish(t, "commands/dev2/light", "on")
	f.inbox.Expect(t, "commands/dev2/light", "on")
	f.publish(t, "config/dev2/set", `{"rate":5}`)
	f.inbox.Expect(t, "config/dev2/set", `{"rate":5}`)

	// A control topic goes to its handler, not to the core's devices.
	f.publish(t, notifyTopic, "deployment")
	f.notes.Expect(t, notifyTopic, "deployment")
	f.publish(t, "config/dev2/set", "end")
	mqtttest.AssertPayloads(t, "core", f.inbox.ReceiveUntil(t, "end"), "end")
}

func TestBridgeFollowsChangedFiltersWhileConnected(t *testing.T) {
	f := newFixture(t)
	b := f.run(t, "commands/#")
	f.waitSubscribed(t, "commands/#", notifyTopic)

	// A new group: commands/# no longer comes from the cloud, alerts/# does.
	b.SetFilters([]string{"alerts/#"})
	f.waitSubscribed(t, "alerts/#", notifyTopic)
	f.publish(t, "commands/dev2/light", "not routed")
	f.publish(t, "alerts/fire", "alert")
	mqtttest.AssertPayloads(t, "core", f.inbox.ReceiveUntil(t, "alert"), "alert")
}
