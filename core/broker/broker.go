// Package broker embeds the mochi MQTT server as ggcore's local broker:
// mutual TLS only, every connection bound to a thing of the group, and
// every message delivered only where the subscription table sends it.
//
// The broker is mochi plus hooks, one concern per file: identity.go
// decides who may connect, routing.go decides what each device receives,
// queue.go holds and sends each subscriber's messages (flow control),
// drops.go counts and logs what could not be delivered.
package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/internal/mochiext"
)

// Thing is a device of the group: the certificate it must present, the
// MQTT client ID it must use, and its name in the subscription table.
type Thing struct {
	// Name is the thing name; the device's MQTT client ID must equal it.
	Name string
	// ARN is the thing ARN, as Source and Target name it in the table.
	ARN string
	// CertificateID is the AWS certificate ID of the device certificate:
	// the lowercase hex SHA-256 of its DER.
	CertificateID string
}

// Group is what the broker enforces: the devices that may connect and the
// subscription table that routes their messages.
type Group struct {
	// ID is the group ID, used in log lines.
	ID string
	// Devices may connect; nothing else may.
	Devices []Thing
	// Table decides every delivery.
	Table *router.Table
	// Functions are the ARNs of the group's local functions: Sources and
	// Targets of the table that are not devices (see functions.go).
	Functions []string
}

// snapshot is an immutable, indexed Group. The broker swaps snapshots
// atomically, so a message is routed entirely by the old or the new group.
type snapshot struct {
	id     string
	table  *router.Table
	byCert map[string]*Thing
	byName map[string]*Thing
	// functions: local function ARN -> its identity as a Source.
	functions map[string]*Thing
}

// routes reports whether pk, published by src (nil: not a device of the
// group), goes to subscriber id through its subscription sub: the table
// allows it, and sub is not a No Local subscription of the publisher.
func (snap *snapshot) routes(src *Thing, id string, sub packets.Subscription, pk *packets.Packet) bool {
	dst := snap.byName[id]
	return src != nil && dst != nil && snap.table.Allowed(src.ARN, dst.ARN, pk.TopicName) &&
		!(sub.NoLocal && pk.Origin == id)
}

func newSnapshot(g Group) (*snapshot, error) {
	if g.Table == nil {
		return nil, errors.New("broker: group has no subscription table")
	}
	s := &snapshot{
		id:     g.ID,
		table:  g.Table,
		byCert: make(map[string]*Thing, len(g.Devices)),
		byName: make(map[string]*Thing, len(g.Devices)),
	}
	for i := range g.Devices {
		t := &g.Devices[i]
		if _, dup := s.byName[t.Name]; dup {
			return nil, fmt.Errorf("broker: device %q listed twice", t.Name)
		}
		if _, dup := s.byCert[t.CertificateID]; dup {
			return nil, fmt.Errorf("broker: certificate %s registered to two devices", t.CertificateID)
		}
		s.byName[t.Name] = t
		s.byCert[t.CertificateID] = t
	}
	s.byName[cloudClient] = &cloudThing
	s.functions = make(map[string]*Thing, len(g.Functions))
	for _, arn := range g.Functions {
		t := &Thing{Name: functionClient(arn), ARN: arn}
		s.functions[arn] = t
		s.byName[t.Name] = t
	}
	return s, nil
}

// Limits bound the memory clients can make the broker hold.
type Limits struct {
	// QueueMessages and QueueBytes bound each subscriber's queue of
	// messages not yet sent (queue.go). When one is full, the oldest
	// queued QoS 0 message makes room; with none, the new message is
	// dropped; either way counted and logged.
	QueueMessages int
	QueueBytes    int64
	// TotalQueueBytes bounds all subscribers' queues together. Past nine
	// tenths of it publishers are slowed (PublishWait); past it messages
	// for subscribers with a queue are dropped, counted and logged.
	// Queues of sessions that are not connected take at most half of it.
	TotalQueueBytes int64
	// PublishWait is the longest one publish is held while the queues are
	// near TotalQueueBytes.
	PublishWait time.Duration
	// MaxInflight bounds unacknowledged outbound QoS 1/2 messages per
	// session: the window of a connected subscriber (lowered to its MQTT 5
	// Receive Maximum), and what mochi keeps for a session that is not
	// connected and has no queue (one that ends with its connection).
	MaxInflight uint16
	// ReceiveMaximum is how many QoS 1/2 publishes a client may have
	// unacknowledged towards the broker (MQTT 5 flow control).
	ReceiveMaximum uint16
	// MaxPacketSize refuses larger packets (v1's limit was 128 KiB).
	MaxPacketSize uint32
	// MaxClients refuses connections past this many.
	MaxClients int64
	// SessionExpiry caps how long a disconnected persistent session (and
	// its queued QoS 1/2 messages) is kept, in seconds.
	SessionExpiry uint32
	// MessageExpiry caps how long a queued message is kept, in seconds.
	MessageExpiry int64
	// ConnectTimeout bounds the time from the end of a connection's TLS
	// handshake to the end of its CONNECT packet; a connection that takes
	// longer is closed and counted (Stats.ConnectTimeouts).
	ConnectTimeout time.Duration
}

// DefaultLimits are sized for a gateway with about a thousand devices: a
// subscriber that stops reading can have 100,000 messages (32 MiB) queued
// before it loses any, and all queues together hold at most 256 MiB.
//
// A subscriber's bound is ten times the 10,000 QoS 1 messages a stalled
// device application must find kept: a burst of QoS 0 messages, several
// publishers back to back into one subscriber (ggbench's fan-in, 80,000
// messages of 256 bytes), is then queued rather than cut by a third, and
// dropping costs more CPU per message than delivering (measured: 88–92k
// delivered msgs/s and none lost, against 74–82k with 29–32% dropped at
// 10,000 messages and 16 MiB).
func DefaultLimits() Limits {
	return Limits{
		QueueMessages:   100000,
		QueueBytes:      32 << 20,
		TotalQueueBytes: 256 << 20,
		PublishWait:     time.Second,
		MaxInflight:     512,
		ReceiveMaximum:  256,
		MaxPacketSize:   256 << 10,
		MaxClients:      10000,
		SessionExpiry:   24 * 60 * 60,
		MessageExpiry:   24 * 60 * 60,
		ConnectTimeout:  mochiext.DefaultConnectTimeout,
	}
}

// withDefaults fills the zero fields of l from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	fill := func(v *int64, def int64) {
		if *v <= 0 {
			*v = def
		}
	}
	if l.QueueMessages <= 0 {
		l.QueueMessages = d.QueueMessages
	}
	fill(&l.QueueBytes, d.QueueBytes)
	fill(&l.TotalQueueBytes, d.TotalQueueBytes)
	fill(&l.MaxClients, d.MaxClients)
	fill(&l.MessageExpiry, d.MessageExpiry)
	if l.PublishWait <= 0 {
		l.PublishWait = d.PublishWait
	}
	if l.ConnectTimeout <= 0 {
		l.ConnectTimeout = d.ConnectTimeout
	}
	if l.MaxInflight == 0 {
		l.MaxInflight = d.MaxInflight
	}
	if l.ReceiveMaximum == 0 {
		l.ReceiveMaximum = d.ReceiveMaximum
	}
	if l.MaxPacketSize == 0 {
		l.MaxPacketSize = d.MaxPacketSize
	}
	if l.SessionExpiry == 0 {
		l.SessionExpiry = d.SessionExpiry
	}
	return l
}

// Options configure a Broker.
type Options struct {
	// Listener is the bound TCP socket to serve on; the broker owns it.
	Listener net.Listener
	// TLS is the server TLS configuration; it must require and verify
	// client certificates (tlsconf.Server does).
	TLS *tls.Config
	// Logger receives the broker's log lines; nil means slog.Default().
	Logger *slog.Logger
	// Limits; zero fields take DefaultLimits()' values.
	Limits Limits
	// Upstream takes messages the table routes to the cloud; nil drops
	// them (counted as unrouted targets).
	Upstream Upstream
	// Persistence, when set, keeps persistent sessions and retained
	// messages across restarts (see persist.go); nil keeps them in memory.
	Persistence *Persistence
	// PersistenceOpened, when set, returns once Persistence has been
	// opened (by another goroutine), with its error: the broker builds
	// what does not need the store meanwhile, and waits for it only then.
	PersistenceOpened func() error
}

// Stats are the broker's counters since start.
type Stats struct {
	// Refused counts connections closed because their certificate or
	// client ID did not match a device of the group.
	Refused int64
	// Unrouted counts publishes that no subscription routes anywhere.
	Unrouted int64
	// Dropped counts messages not delivered to a subscriber: its queue
	// full (or all queues at their bound), larger than it accepts, or
	// refused by the upstream spool (see drops.go, cloud.go).
	Dropped int64
	// QueuedBytes is what all subscribers' queues hold now.
	QueuedBytes int64
	// InflightDropped counts QoS 1/2 messages refused because a session's
	// inflight window was full.
	InflightDropped int64
	// Clients is the number of connected clients.
	Clients int64
	// ConnectTimeouts counts connections closed because their CONNECT did
	// not arrive within Limits.ConnectTimeout of their TLS handshake.
	ConnectTimeouts int64
}

// Broker is the local MQTT broker.
type Broker struct {
	srv  *mqtt.Server
	ln   *mochiext.TLSListener
	log  *slog.Logger
	addr net.Addr
	snap atomic.Pointer[snapshot]

	limits Limits
	queues *queues
	drops  *drops
	// clashes holds the broker's inflight messages set aside while a
	// client's packet with the same identifier is processed (packetid.go).
	clashes clashes

	upstream Upstream
	// store keeps sessions across restarts; nil without Persistence.
	store *sessionStore
	// cloud is the inline client messages from the cloud come from.
	cloud *mqtt.Client
	// fns connects local functions (functions.go).
	fns functionRouting

	refused  atomic.Int64
	unrouted atomic.Int64

	closeOnce sync.Once
	closeErr  error
}

// sentinelClient holds the broker's own shared subscriptions (see New).
// MQTT client IDs of devices are thing names, which cannot contain NUL.
const sentinelClient = "\x00ggcore-router"

// MochiCapabilities are mochi's capabilities for lim: inflight window,
// Receive Maximum, packet size, clients and expiry intervals. New adds
// ggcore's own to them; a bare mochi measured beside ggcore (ggbench,
// the queue benchmarks) takes them as they are.
func MochiCapabilities(lim Limits) *mqtt.Capabilities {
	caps := mqtt.NewDefaultServerCapabilities()
	caps.MaximumInflight = lim.MaxInflight
	caps.ReceiveMaximum = lim.ReceiveMaximum
	caps.MaximumPacketSize = lim.MaxPacketSize
	caps.MaximumClients = lim.MaxClients
	caps.MaximumSessionExpiryInterval = lim.SessionExpiry
	caps.MaximumMessageExpiryInterval = lim.MessageExpiry
	return caps
}

// New builds a broker serving group g on o.Listener; Start starts it.
func New(o Options, g Group) (*Broker, error) {
	if o.Listener == nil || o.TLS == nil {
		return nil, errors.New("broker: a listener and a TLS configuration are required")
	}
	if err := checkTLS(o.TLS); err != nil {
		return nil, err
	}
	b, err := build(o, g)
	if err != nil {
		return nil, err
	}
	if err := b.attach(o.Listener, o.TLS); err != nil {
		_ = b.closePersistence()
		return nil, err
	}
	return b, nil
}

// Prepare builds and starts a broker for group g that listens nowhere
// yet: its engine, hooks and session store, the stored sessions restored.
// Nothing is bound until Serve. ggcore prepares its broker while its keys
// load, and serves once every key has passed its checks. o.Listener and
// o.TLS are not used.
func Prepare(o Options, g Group) (*Broker, error) {
	o.Listener, o.TLS = nil, nil
	b, err := build(o, g)
	if err != nil {
		return nil, err
	}
	if err := b.Start(); err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}

// Serve has a broker from Prepare serve on ln, which it then owns, with
// the TLS configuration cfg. Call SetUpstream, if at all, before.
func (b *Broker) Serve(ln net.Listener, cfg *tls.Config) error {
	if err := checkTLS(cfg); err != nil {
		return err
	}
	if err := b.attach(ln, cfg); err != nil {
		return err
	}
	b.srv.Listeners.Serve(b.ln.ID(), b.srv.EstablishConnection)
	return nil
}

// SetUpstream sets where messages the table routes to the cloud go, for a
// broker from Prepare, before Serve.
func (b *Broker) SetUpstream(u Upstream) { b.upstream = u }

// checkTLS refuses a server configuration that does not require and
// verify client certificates.
func checkTLS(cfg *tls.Config) error {
	if cfg == nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("broker: TLS configuration must require and verify client certificates")
	}
	return nil
}

// attach adds the TLS listener on ln to the engine.
func (b *Broker) attach(ln net.Listener, cfg *tls.Config) error {
	// corkListener batches acknowledgements (cork.go).
	tl := mochiext.NewTLSListener("mqtts", corkListener{ln}, cfg, nil)
	tl.ConnectTimeout = b.limits.ConnectTimeout
	if err := b.srv.AddListener(tl); err != nil {
		return fmt.Errorf("broker: add listener: %w", err)
	}
	b.ln, b.addr = tl, ln.Addr()
	return nil
}

// build makes the broker of New and Prepare: engine, hooks and session
// store, no listener.
func build(o Options, g Group) (*Broker, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	lim := o.Limits.withDefaults()
	snap, err := newSnapshot(g)
	if err != nil {
		return nil, err
	}

	caps := MochiCapabilities(lim)
	// mochi's own per-client outbound queue carries only what reaches a
	// client before its session is established; every other delivery
	// goes through queue.go. Its channel is allocated for every client.
	caps.MaximumClientWritesPending = 16
	// Shared subscriptions would let one device take messages meant for
	// another; v1 never offered them. SUBSCRIBE to $share/... gets 0x9E.
	caps.SharedSubAvailable = 0

	b := &Broker{log: log, limits: lim, upstream: o.Upstream, drops: &drops{log: log}}
	b.queues = newQueues(b)
	b.snap.Store(snap)
	b.srv = mqtt.New(&mqtt.Options{
		Capabilities: caps,
		Logger:       engineLogger(log),
		// queue.go writes queued messages in batches itself; mochi's
		// write buffer serves only acknowledgements and the like, and
		// exists only while packets wait to be written (its size is the
		// batch mochi flushes at), so it costs an idle client nothing.
		ClientNetWriteBufferSize: 2 << 10,
		// The read buffer is allocated for every client, under which
		// crypto/tls already holds a whole decrypted record: 512 bytes
		// take a typical PUBLISH in one read of the record and keep 1.5
		// KiB per client less than mochi's 2 KiB (make bench: no cost in
		// CPU per message); larger payloads are read straight into
		// their own buffer whatever the size.
		ClientNetReadBufferSize: 512,
		// $SYS topics are published with no origin; the routing hook
		// drops them like any other unrouted message.
		SysTopicResendInterval: 60,
	})
	for _, h := range []mqtt.Hook{&takeoverHook{b: b}, &identityHook{b: b}, &routingHook{b: b}, &queueHook{qs: b.queues}} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("broker: add hook %s: %w", h.ID(), err)
		}
	}
	// mochi consults OnSelectSubscribers only for topics that have a
	// shared subscriber. These two subscriptions of a client that never
	// connects give every topic one, so the routing hook sees every
	// delivery: live publishes, will messages and $SYS alike. (Most live
	// publishes never reach mochi's delivery: see publish.go.)
	for _, f := range []string{"$share/ggcore/#", "$share/ggcore/$SYS/#"} {
		b.srv.Topics.Subscribe(sentinelClient, packets.Subscription{Filter: f})
	}
	b.cloud = b.srv.NewClient(nil, "local", cloudClient, true)
	if o.PersistenceOpened != nil {
		if err := o.PersistenceOpened(); err != nil {
			return nil, err
		}
	}
	if err := b.openPersistence(o.Persistence); err != nil {
		return nil, err
	}
	return b, nil
}

// Start serves in the background until Close.
func (b *Broker) Start() error {
	if err := b.restore(); err != nil {
		return err
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("broker: serve: %w", err)
	}
	return nil
}

// Addr is the address the broker serves on; nil before Serve for a
// broker from Prepare.
func (b *Broker) Addr() net.Addr { return b.addr }

// Close stops listening and ends every connection: MQTT 5 clients get
// DISCONNECT 0x8B (server shutting down); connections that have not sent
// CONNECT, and clients that do not take their DISCONNECT within
// mochiext.ShutdownGrace (a client that stopped reading), are closed.
// It is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.queues.closed.Store(true)
		// Before mochi's Close, which can hang (see mochiext/shutdown.go).
		if b.ln != nil {
			b.ln.Shutdown(b.srv, mochiext.ShutdownGrace)
		}
		if err := b.srv.Close(); err != nil {
			b.closeErr = fmt.Errorf("broker: close: %w", err)
			return
		}
		b.closeErr = b.closePersistence()
	})
	return b.closeErr
}

// Stats returns the counters.
func (b *Broker) Stats() Stats {
	return Stats{
		Refused:         b.refused.Load(),
		Unrouted:        b.unrouted.Load(),
		Dropped:         b.drops.total.Load(),
		QueuedBytes:     b.queues.bytes.Load(),
		InflightDropped: atomic.LoadInt64(&b.srv.Info.InflightDropped),
		Clients:         atomic.LoadInt64(&b.srv.Info.ClientsConnected),
		ConnectTimeouts: b.listenerCount((*mochiext.TLSListener).ConnectTimeouts),
	}
}

// Connections is how many connections completed the TLS handshake since
// start, whether or not they became clients.
func (b *Broker) Connections() int64 { return b.listenerCount((*mochiext.TLSListener).Handshakes) }

// listenerCount is one of the listener's counts, 0 before Serve.
func (b *Broker) listenerCount(count func(*mochiext.TLSListener) int64) int64 {
	if b.ln == nil {
		return 0
	}
	return count(b.ln)
}

// ClientDropped returns how many messages for client id were dropped
// (see Stats.Dropped) since it joined the group.
func (b *Broker) ClientDropped(id string) int64 { return b.drops.client(id) }

// DisconnectAll disconnects every connected client (MQTT 5: DISCONNECT
// 0x98, administrative action), as v1 did when it rotated the server
// certificate. Sessions are kept, so clients resume where they left off.
// It returns how many clients it disconnected.
func (b *Broker) DisconnectAll() int {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Closed() {
			continue
		}
		_ = b.srv.DisconnectClient(cl, packets.ErrAdministrativeAction)
		n++
	}
	return n
}

// SetGroup switches to group g in one step. Devices no longer in the
// group, or whose registered certificate changed, are disconnected and
// their sessions removed; queued messages that the new table no longer
// allows are discarded.
func (b *Broker) SetGroup(g Group) error {
	snap, err := newSnapshot(g)
	if err != nil {
		return err
	}
	b.snap.Store(snap)
	for id, cl := range b.srv.Clients.GetAll() {
		t := snap.byName[id]
		if t == nil || b.sessionCertificate(cl) != t.CertificateID {
			b.log.Info("device removed from group: disconnecting", "client", id, "group", snap.id)
			_ = b.srv.DisconnectClient(cl, packets.ErrNotAuthorized)
			b.srv.UnsubscribeClient(cl)
			b.srv.Clients.Delete(id)
			b.forgetSession(id)
			b.queues.forget(id)
			b.drops.flush(id, true)
			continue
		}
		b.purgeInflight(cl, snap, t)
		b.queues.purge(id, func(pk *packets.Packet) bool {
			src := snap.byName[pk.Origin]
			return src != nil && snap.table.Allowed(src.ARN, t.ARN, pk.TopicName)
		})
	}
	return nil
}

// purgeInflight drops queued outbound publishes that the current table no
// longer allows, so a QoS 1/2 resend cannot outlive the subscription that
// allowed it.
func (b *Broker) purgeInflight(cl *mqtt.Client, snap *snapshot, target *Thing) {
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		src := snap.byName[pk.Origin]
		if src != nil && snap.table.Allowed(src.ARN, target.ARN, pk.TopicName) {
			continue
		}
		if cl.State.Inflight.Delete(pk.PacketID) {
			cl.State.Inflight.IncreaseSendQuota()
			atomic.AddInt64(&b.srv.Info.Inflight, -1)
			b.forgetQueued(cl.ID, pk.PacketID)
		}
	}
}
