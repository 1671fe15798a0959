// Package iotbroker is ggcloud's stand-in for the AWS IoT Core message
// broker: an embedded mochi MQTT server (MQTT 3.1.1 and 5) behind mutual
// TLS, where every request is authorized as AWS IoT authorizes it, by the
// AWS IoT policies attached to the client's registered certificate.
//
// A client presents any certificate (it is not verified against a CA);
// the certificate is looked up by its ID, the lowercase hex SHA-256 of its
// DER, at every CONNECT. An unregistered certificate, or one outside its
// validity, is refused. The certificate's thing is the value of
// ${iot:Connection.Thing.ThingName}. The checks, with R the region and A
// the account:
//
//	CONNECT    iot:Connect   arn:aws:iot:R:A:client/CLIENT-ID
//	will       iot:Publish   arn:aws:iot:R:A:topic/WILL-TOPIC  (at CONNECT)
//	PUBLISH    iot:Publish   arn:aws:iot:R:A:topic/TOPIC
//	SUBSCRIBE  iot:Subscribe arn:aws:iot:R:A:topicfilter/FILTER (each filter)
//	delivery   iot:Receive   arn:aws:iot:R:A:topic/TOPIC  (each message, each subscriber)
//
// Delivery covers live messages, will messages and retained messages
// sent on SUBSCRIBE. What a refusal looks like on the wire:
//
//	               MQTT 5                          MQTT 3.1.1
//	CONNECT        CONNACK 0x87, closed            CONNACK 0x05, closed
//	PUBLISH QoS 0  dropped silently                dropped, connection closed
//	PUBLISH QoS 1  PUBACK 0x87 (dropped)           dropped, connection closed
//	PUBLISH QoS 2  PUBREC 0x87 (dropped)           dropped, connection closed
//	SUBSCRIBE      SUBACK 0x87 for the filter      SUBACK 0x80 for the filter
//	delivery       not delivered                   not delivered
//
// An MQTT 3.1.1 client closed for a refused publish has its will message
// published, as for any connection that ends without DISCONNECT (and to
// the subscribers allowed to receive it). Every refusal is logged ("mqtt
// request refused") with the client ID, its thing, the action, the
// resource and the policy statement (or the absence of one) that decided;
// the same refusal for the same client is logged again at most every
// 10 s, with the count of repeats.
//
// Policies are re-read from the store at every CONNECT; while a client is
// connected its parsed policies are reused for up to Options.PolicyTTL
// (2 s by default), so a policy change reaches connected clients within
// that time. Messages queued for a client's persistent session are
// checked for iot:Receive when queued, not again when resent.
//
// The broker is mochi plus hooks, one concern per file: connect.go
// (identity and iot:Connect), publish.go (iot:Publish), subscribe.go
// (iot:Subscribe and retained messages), receive.go (iot:Receive),
// shutdown.go (a Close that cannot hang).
package iotbroker

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/internal/mochiext"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// DefaultPolicyTTL is how long a connected client's parsed policies are
// reused before they are read again from the store.
const DefaultPolicyTTL = 2 * time.Second

// Options configure a Broker.
type Options struct {
	// Listener is the bound TCP socket to serve on; the broker owns it.
	Listener net.Listener
	// TLS is the server's TLS configuration. It must require a client
	// certificate (tls.RequireAnyClientCert: the broker authorizes the
	// certificate by its registration, not by a CA).
	TLS *tls.Config
	// Store holds the registered certificates and their policies.
	Store *store.Store
	// Region and Account make the ARNs that policies name; empty means
	// the store's identity.
	Region, Account string
	// Log receives the broker's log lines; nil means slog.Default().
	Log *slog.Logger
	// PolicyTTL is how long a connected client's policies are reused
	// before they are read again: DefaultPolicyTTL when zero, every check
	// when negative (about 0.1 ms a check, a sixth of the throughput:
	// see BenchmarkThroughputQoS1).
	PolicyTTL time.Duration
}

// Broker is the MQTT broker.
type Broker struct {
	srv     *mqtt.Server
	store   *store.Store
	log     *slog.Logger
	addr    net.Addr
	ttl     time.Duration
	arnBase string // arn:aws:iot:REGION:ACCOUNT:

	// enforce is false only in benchmarks measuring the cost of the
	// checks: then everything registered may do anything.
	enforce bool

	// sessions holds each client ID's authorization state (see session).
	sessions sync.Map // client ID -> *session
	// connecting holds sessions between OnConnect and OnSessionEstablish.
	connecting sync.Map // *mqtt.Client -> *session

	// ln is mochi's listener; it closes the connections mochi does not
	// close itself (see shutdown.go).
	ln *mochiext.TLSListener

	closeOnce sync.Once
	closeErr  error
	// self is the inline client ggcloud's own messages come from.
	self *mqtt.Client
}

// sentinelClient holds the broker's own shared subscriptions (see New).
// No client can take its ID: mochi refuses U+0000 in any MQTT string, as
// MQTT requires (TestConnectRefused checks).
const sentinelClient = "\x00ggcloud-receive"

// sentinelFilters make mochi consult OnSelectSubscribers for every
// topic: it does so only for topics with a shared subscriber.
var sentinelFilters = []string{"$share/\x00ggcloud/#"}

// New builds a broker; Start starts it.
func New(o Options) (*Broker, error) {
	if o.Listener == nil || o.TLS == nil || o.Store == nil {
		return nil, errors.New("iotbroker: a listener, a TLS configuration and a store are required")
	}
	if o.TLS.ClientAuth != tls.RequireAnyClientCert && o.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("iotbroker: the TLS configuration must require a client certificate")
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	if o.Region == "" || o.Account == "" {
		id, _, err := o.Store.Identity()
		if err != nil {
			return nil, fmt.Errorf("iotbroker: %w", err)
		}
		o.Region, o.Account = cmp.Or(o.Region, id.Region), cmp.Or(o.Account, id.Account)
	}
	ttl := o.PolicyTTL
	if ttl == 0 {
		ttl = DefaultPolicyTTL
	}

	caps := mqtt.NewDefaultServerCapabilities()
	// AWS IoT Core's limits where they matter to a client.
	caps.MaximumPacketSize = 128 << 10
	caps.TopicAliasMaximum = 8
	caps.ReceiveMaximum = 100
	caps.MaximumInflight = 1024
	caps.MaximumClientWritesPending = 2048
	caps.MaximumSessionExpiryInterval = 60 * 60
	caps.MaximumMessageExpiryInterval = 60 * 60
	// A refused PUBLISH is acknowledged with 0x87 and no echo of the
	// publisher's user properties.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true

	b := &Broker{
		store:   o.Store,
		log:     log,
		addr:    o.Listener.Addr(),
		ttl:     ttl,
		arnBase: fmt.Sprintf("arn:aws:iot:%s:%s:", o.Region, o.Account),
		enforce: true,
		ln:      mochiext.NewTLSListener(listenerID, o.Listener, o.TLS, log),
	}
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		// mochi's own lines below Warn (hooks added, listener attached,
		// each client's comings and goings) are debugging detail.
		Logger: slog.New(&minLevel{h: log.Handler(), min: slog.LevelWarn}).With("component", "mqtt"),
		// Queued packets are written in batches of up to one TLS record.
		ClientNetWriteBufferSize: 16 << 10,
		// $SYS topics are not AWS IoT's; receive.go delivers none.
		SysTopicResendInterval: 3600,
	})
	for _, h := range []mqtt.Hook{&connectHook{b: b}, &publishHook{b: b}, &subscribeHook{b: b}, &receiveHook{b: b}} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("iotbroker: add hook %s: %w", h.ID(), err)
		}
	}
	for _, f := range sentinelFilters {
		b.srv.Topics.Subscribe(sentinelClient, packets.Subscription{Filter: f})
	}
	b.self = b.srv.NewClient(nil, "local", selfClient, true)
	if err := b.srv.AddListener(b.ln); err != nil {
		return nil, fmt.Errorf("iotbroker: add listener: %w", err)
	}
	return b, nil
}

// Start serves in the background until Close.
func (b *Broker) Start() error {
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("iotbroker: serve: %w", err)
	}
	return nil
}

// Addr is the address the broker serves on.
func (b *Broker) Addr() net.Addr { return b.addr }

// selfClient is the origin of ggcloud's own messages; no MQTT client can
// take the ID (MQTT strings cannot hold NUL).
const selfClient = "\x00ggcloud"

// Publish sends a message of ggcloud's own (such as a deployment
// notification) at QoS 1 to the subscribers whose policies allow
// iot:Receive on its topic.
func (b *Broker) Publish(topic string, payload []byte) error {
	return b.srv.InjectPacket(b.self, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, Payload: payload, PacketID: 1,
	})
}

// Close stops listening, disconnects every client (MQTT 5: DISCONNECT
// 0x8B, server shutting down), closes every other connection (those that have
// not sent CONNECT, and clients that did not take their DISCONNECT within
// closeGrace) and returns once every connection has ended. It is safe to
// call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		// Before mochi's Close, which can hang (see shutdown.go).
		b.ln.Shutdown(b.srv, closeGrace)
		if err := b.srv.Close(); err != nil {
			b.closeErr = fmt.Errorf("iotbroker: close: %w", err)
		}
	})
	return b.closeErr
}

// clientARN is the resource of iot:Connect.
func (b *Broker) clientARN(clientID string) string { return b.arnBase + "client/" + clientID }

// topicARN is the resource of iot:Publish and iot:Receive.
func (b *Broker) topicARN(topic string) string { return b.arnBase + "topic/" + topic }

// topicFilterARN is the resource of iot:Subscribe.
func (b *Broker) topicFilterARN(filter string) string { return b.arnBase + "topicfilter/" + filter }

// The actions the broker checks.
const (
	actionConnect   = "iot:Connect"
	actionPublish   = "iot:Publish"
	actionSubscribe = "iot:Subscribe"
	actionReceive   = "iot:Receive"
)

// minLevel passes on the records of h at min or above.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m *minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m *minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }

func (m *minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &minLevel{h: m.h.WithAttrs(attrs), min: m.min}
}

func (m *minLevel) WithGroup(name string) slog.Handler {
	return &minLevel{h: m.h.WithGroup(name), min: m.min}
}
