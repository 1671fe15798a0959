// Package bridge is the core's MQTT bridge to the cloud: its upstream
// connection to AWS IoT Core, or any MQTT 5 broker, such as ggcloud's.
// Messages the subscription table routes to "cloud" wait in a persistent
// spool and are published upstream at QoS 1, in order, each removed from
// the spool only after its PUBACK; subscriptions whose source is "cloud"
// become upstream subscriptions, and what arrives on them is handed to
// the local broker as source "cloud".
package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/core/spool"
)

// Options configure a Bridge.
type Options struct {
	// Host and Port are config.json's iotHost and iotMqttPort.
	Host string
	Port int
	// ClientID is the core's thing name.
	ClientID string
	// KeepAlive is coreThing.keepAlive in seconds.
	KeepAlive uint16
	// MaxRetryInterval caps the wait between connection attempts
	// (coreThing.mqttMaxConnectionRetryInterval); zero means 60 s.
	MaxRetryInterval time.Duration
	// TLS is the client TLS configuration with the IoTCertificate
	// principal (tlsconf.Client).
	TLS *tls.Config
	// Spool holds outbound messages until their PUBACK.
	Spool *spool.Spool
	// Deliver hands a message from the cloud to the local broker.
	Deliver func(topic string, payload []byte, qos byte) error
	// Control are topics the core itself listens to upstream (such as
	// deployment notifications), with their handlers; what arrives on
	// them is not delivered to the broker.
	Control map[string]func(payload []byte)
	// Log receives the bridge's lines; nil means slog.Default().
	Log *slog.Logger
}

// Bridge is the upstream connection.
type Bridge struct {
	o   Options
	log *slog.Logger

	mu      sync.Mutex
	filters []string // upstream subscriptions wanted
	cm      *autopaho.ConnectionManager
	refused int64 // messages the upstream refused (reason code >= 0x80)
	// conn lives as long as the current upstream connection: a publish
	// waiting for its PUBACK when the connection drops gives up at once
	// and is sent again on the next one, rather than after paho's timeout.
	conn       context.Context
	connCancel context.CancelFunc
}

// New returns a Bridge; Run connects it.
func New(o Options) (*Bridge, error) {
	if o.Host == "" || o.Spool == nil || o.Deliver == nil || o.TLS == nil {
		return nil, errors.New("bridge: a host, a spool, a TLS configuration and a delivery function are required")
	}
	if o.MaxRetryInterval == 0 {
		o.MaxRetryInterval = time.Minute
	}
	b := &Bridge{o: o, log: o.Log}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.log = b.log.With("component", "bridge")
	return b, nil
}

// Refused counts the messages the upstream refused (PUBACK reason code
// 0x80 or above), which were dropped rather than block the spool.
func (b *Bridge) Refused() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.refused
}

// Publish spools a message for the cloud; it returns once the message is
// durable.
func (b *Bridge) Publish(topic string, payload []byte) error {
	return b.o.Spool.Append(context.Background(), topic, payload)
}

// SetFilters sets the upstream subscriptions (the Subjects of the
// subscriptions whose source is cloud); when connected, the difference is
// subscribed and unsubscribed at once.
func (b *Bridge) SetFilters(filters []string) {
	filters = slices.Compact(slices.Sorted(slices.Values(filters)))
	b.mu.Lock()
	old, cm := b.filters, b.cm
	b.filters = filters
	b.mu.Unlock()
	if cm == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var add, drop []string
	for _, f := range filters {
		if !slices.Contains(old, f) {
			add = append(add, f)
		}
	}
	for _, f := range old {
		if !slices.Contains(filters, f) {
			drop = append(drop, f)
		}
	}
	if len(add) > 0 {
		b.subscribe(ctx, cm, add)
	}
	if len(drop) > 0 {
		if _, err := cm.Unsubscribe(ctx, &paho.Unsubscribe{Topics: drop}); err != nil {
			b.log.Warn("upstream unsubscribe failed", "filters", drop, "error", err)
		}
	}
}

// controlTopics lists Options.Control's topics.
func (b *Bridge) controlTopics() []string {
	return slices.Sorted(maps.Keys(b.o.Control))
}

func (b *Bridge) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, filters []string) {
	sub := &paho.Subscribe{}
	for _, f := range filters {
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := cm.Subscribe(ctx, sub)
	if err != nil {
		b.log.Warn("upstream subscribe failed; retried at the next connection", "filters", filters, "error", err)
		return
	}
	for i, code := range ack.Reasons {
		if code >= 0x80 && i < len(filters) {
			b.log.Error("upstream refused a subscription", "filter", filters[i], "reason", fmt.Sprintf("0x%02x", code))
		}
	}
}

// Run connects upstream, keeps reconnecting with backoff (1 s doubling to
// MaxRetryInterval) and drains the spool whenever connected, until ctx
// ends.
func (b *Bridge) Run(ctx context.Context) error {
	u := &url.URL{Scheme: "tls", Host: net.JoinHostPort(b.o.Host, strconv.Itoa(b.o.Port))}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        b.o.TLS,
		KeepAlive:                     b.o.KeepAlive,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff: func(attempt int) time.Duration {
			return min(b.o.MaxRetryInterval, time.Second<<min(attempt, 10))
		},
		ConnectTimeout: 10 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			b.log.Info("connected upstream", "server", u.Host, "spooled", b.o.Spool.Stats().Messages)
			b.mu.Lock()
			if b.connCancel != nil {
				b.connCancel()
			}
			b.conn, b.connCancel = context.WithCancel(ctx)
			filters := append(slices.Clone(b.filters), b.controlTopics()...)
			b.mu.Unlock()
			if len(filters) > 0 {
				go func() {
					sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					defer cancel()
					b.subscribe(sctx, cm, filters)
				}()
			}
		},
		OnConnectionDown: func() bool {
			b.mu.Lock()
			if b.connCancel != nil {
				b.connCancel()
			}
			b.mu.Unlock()
			b.log.Warn("upstream connection lost; messages for the cloud are spooled until it is back")
			return true
		},
		OnConnectError: func(err error) {
			b.log.Warn("upstream connection failed; retrying", "server", u.Host, "error", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: b.o.ClientID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) {
					p := pr.Packet
					if fn, ok := b.o.Control[p.Topic]; ok {
						fn(p.Payload)
						return true, nil
					}
					if err := b.o.Deliver(p.Topic, p.Payload, p.QoS); err != nil {
						b.log.Warn("message from the cloud not delivered", "topic", p.Topic, "error", err)
					}
					return true, nil
				},
			},
			OnClientError: func(err error) { b.log.Warn("upstream client error", "error", err) },
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	b.mu.Lock()
	b.cm = cm
	b.mu.Unlock()
	b.drain(ctx, cm)
	<-cm.Done()
	return nil
}

// drainBatch is how many spooled messages are read at a time.
const drainBatch = 64

// drain publishes spooled messages in order while connected; a message is
// acknowledged in the spool only after its PUBACK.
func (b *Bridge) drain(ctx context.Context, cm *autopaho.ConnectionManager) {
	for ctx.Err() == nil {
		if err := b.o.Spool.Wait(ctx); err != nil {
			return
		}
		if err := cm.AwaitConnection(ctx); err != nil {
			return
		}
		msgs, err := b.o.Spool.Peek(drainBatch)
		if err != nil {
			b.log.Error("spool unreadable", "error", err)
			sleep(ctx, time.Second)
			continue
		}
		b.mu.Lock()
		conn := b.conn
		b.mu.Unlock()
		if conn == nil || conn.Err() != nil {
			// Connected, but OnConnectionUp has not run yet.
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		for _, m := range msgs {
			resp, err := cm.Publish(conn, &paho.Publish{QoS: 1, Topic: m.Topic, Payload: m.Payload})
			// A PUBACK with a reason code of 0x80 or above comes with an
			// error too; the message was answered, and is dropped rather
			// than block the spool.
			refused := resp != nil && resp.ReasonCode >= 0x80
			if err != nil && !refused {
				if ctx.Err() == nil {
					b.log.Debug("upstream publish failed; kept in the spool", "topic", m.Topic, "error", err)
					sleep(ctx, 100*time.Millisecond)
				}
				break
			}
			if refused {
				b.mu.Lock()
				b.refused++
				b.mu.Unlock()
				b.log.Error("upstream refused a message; dropped", "topic", m.Topic, "reason", fmt.Sprintf("0x%02x", resp.ReasonCode))
			}
			if err := b.o.Spool.Ack(m.Seq); err != nil {
				b.log.Error("spool ack failed", "error", err)
			}
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
