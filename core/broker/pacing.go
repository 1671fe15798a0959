package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/topic"
)

// pacer makes a connected subscriber that is slower than its publishers
// slow them down instead of losing their messages.
//
// mochi queues each delivery on the subscriber's bounded queue (QoS 0) or
// inflight window (QoS 1/2) and drops what does not fit. The pacer runs on
// the publisher's goroutine just before mochi queues (from
// OnSelectSubscribers) and waits, up to Limits.InflightWait, while the
// subscriber's queue or window is nearly full. Meanwhile the publisher's
// connection is not read, so TCP flow control paces the publisher. The
// bound matters: two devices that publish to each other could otherwise
// wait on each other for ever; past it the message is dropped, counted
// and logged (drops.go). Offline sessions are never waited for.
//
// mochi does not expose its queue length, so the pacer counts QoS 0
// publishes it lets through and sees them leave (OnPacketSent) or fail
// (OnPublishDropped). Several publishers check at once, so each limit
// keeps a quarter of its room as headroom.
type pacer struct {
	mqtt.HookBase
	b *Broker

	queued sync.Map // client ID -> *atomic.Int64: QoS 0 publishes queued, not yet written
}

func (p *pacer) ID() string { return "ggcore-pacing" }

func (p *pacer) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketSent, mqtt.OnPublishDropped, mqtt.OnDisconnect:
		return true
	}
	return false
}

// limits returns how many QoS 0 publishes may be queued for one client
// and how many QoS 1/2 messages may be in its window before publishers
// wait. QoS 1/2 messages share the queue, so QoS 0 gets what they leave.
func (p *pacer) limits() (queue, window int64) {
	caps := p.b.srv.Options.Capabilities
	window = int64(caps.MaximumInflight)
	queue = int64(caps.MaximumClientWritesPending) - window
	return queue - queue/4, window - window/4
}

// beforeDelivery is called once for each delivery of a message at qos to
// client id, before mochi queues it.
func (p *pacer) beforeDelivery(id string, qos byte) {
	cl, ok := p.b.srv.Clients.Get(id)
	if !ok {
		return
	}
	queueLimit, windowLimit := p.limits()
	if qos > 0 {
		p.waitWhile(cl, func() bool { return int64(cl.State.Inflight.Len()) >= windowLimit })
		return
	}
	n := p.counter(id)
	p.waitWhile(cl, func() bool { return n.Load() >= queueLimit })
	n.Add(1)
}

func (p *pacer) waitWhile(cl *mqtt.Client, full func() bool) {
	if !full() {
		return
	}
	deadline := time.Now().Add(p.b.limits.InflightWait)
	pause := 50 * time.Microsecond
	for full() && !cl.Closed() && time.Now().Before(deadline) {
		time.Sleep(pause)
		pause = min(2*pause, 5*time.Millisecond)
	}
}

func (p *pacer) counter(id string) *atomic.Int64 {
	if n, ok := p.queued.Load(id); ok {
		return n.(*atomic.Int64)
	}
	n, _ := p.queued.LoadOrStore(id, new(atomic.Int64))
	return n.(*atomic.Int64)
}

// left records that a QoS 0 publish is no longer queued for cl.
func (p *pacer) left(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 0 {
		return
	}
	if n, ok := p.queued.Load(cl.ID); ok {
		if c := n.(*atomic.Int64); c.Add(-1) < 0 {
			c.Store(0) // a write the pacer did not count, such as a retained replay
		}
	}
}

func (p *pacer) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) { p.left(cl, pk) }

func (p *pacer) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	// mochi passes the message as published; what was queued was at most
	// the subscription's QoS, so count it if either was QoS 0.
	if pk.FixedHeader.Qos != 0 && !subscribedAtQoS0(cl, pk.TopicName) {
		return
	}
	pk.FixedHeader.Qos = 0
	p.left(cl, pk)
}

// subscribedAtQoS0 reports whether cl receives name at QoS 0: mochi
// delivers at the highest QoS among the client's matching subscriptions.
func subscribedAtQoS0(cl *mqtt.Client, name string) bool {
	var qos byte
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if topic.Match(filter, name) {
			qos = max(qos, sub.Qos)
		}
	}
	return qos == 0
}

func (p *pacer) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { p.queued.Delete(cl.ID) }
