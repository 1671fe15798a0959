package broker

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/internal/mochiext"
)

// routingHook enforces the subscription table on every path a message can
// take to a device:
//
//   - live publishes and will messages: OnSelectSubscribers removes every
//     subscriber the table does not allow for (publisher, subscriber,
//     topic) before mochi queues anything for them;
//   - retained messages: mochi's own replay is switched off (OnSubscribe)
//     and replayRetained sends each retained message only where the table
//     allows its original publisher to reach the subscriber;
//   - SUBSCRIBE: refused when no subscription targeting the device can
//     ever match the filter (OnACLCheck);
//   - $share/...: not offered (see New); $SYS: no publisher, so dropped;
//   - QoS 1/2 resends: queued messages are purged on a table change
//     (Broker.SetGroup).
//
// Publishes that the table routes nowhere are acknowledged, counted and
// dropped (OnPublish): neither delivered nor retained.
type routingHook struct {
	mqtt.HookBase
	b *Broker

	// replays holds, per client, what the SUBSCRIBE being processed owes
	// in retained messages: the subscriptions (OnSubscribe), then the
	// messages themselves (OnSubscribed), due once its SUBACK is out.
	replays sync.Map // *mqtt.Client -> []packets.Subscription, then []replay

	// subs and partial serve the direct publish path (publish.go).
	subs     subscriberCache
	partial  sync.Map // publisher's client ID -> *partialPublish
	nPartial atomic.Int64
}

func (h *routingHook) ID() string { return "ggcore-routing" }

func (h *routingHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnSelectSubscribers, mqtt.OnWill,
		mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPacketProcessed, mqtt.OnDisconnect,
		mqtt.OnPacketEncode:
		return true
	}
	return false
}

// OnPacketEncode tells MQTT 5 clients in CONNACK that shared subscriptions
// are not available (mochi omits the property, which would mean they are),
// and has acknowledgements encoded cheaply (plainAck).
func (h *routingHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode == packets.CodeSuccess.Code {
			pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
		}
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if plainAck(&pk) {
			pk.ProtocolVersion = 4
		}
	}
	return pk
}

// plainAck reports whether acknowledgement pk encodes to the same bytes
// in MQTT 5 as in MQTT 3.1.1: packet ID only. mochi leaves out the reason
// code and properties of an MQTT 5 acknowledgement with a success code
// and no reason string or user property, but its encoder looks every
// possible property up in two maps first; it writes one such
// acknowledgement per QoS 1/2 message, so encoding it as 3.1.1 saves that.
func plainAck(pk *packets.Packet) bool {
	return pk.ProtocolVersion == 5 && pk.ReasonCode < packets.ErrUnspecifiedError.Code &&
		pk.Properties.ReasonString == "" && len(pk.Properties.User) == 0
}

// OnACLCheck answers mochi's two questions: may this client publish on a
// topic (always; OnPublish routes), and may it receive on a filter or
// topic (only if some subscription targeting it can match).
func (h *routingHook) OnACLCheck(cl *mqtt.Client, topicOrFilter string, write bool) bool {
	if write {
		return true
	}
	snap := h.b.snap.Load()
	t := snap.byName[cl.ID]
	return t != nil && snap.table.CanReceive(t.ARN, topicOrFilter)
}

// OnPublish drops, after acknowledging, a publish that the table routes
// nowhere, and delivers the others itself when it can (publish.go).
func (h *routingHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	snap := h.b.snap.Load()
	if t := snap.byName[cl.ID]; t != nil && snap.table.HasRoute(t.ARN, pk.TopicName) {
		h.b.toFunctions(snap, t, pk)
		if err := h.b.toCloud(cl, pk); err != nil {
			return pk, err
		}
		if h.publishDirect(cl, snap, t, pk) {
			return pk, packets.CodeSuccessIgnore
		}
		return pk, nil
	}
	h.b.unrouted.Add(1)
	h.b.log.Debug("unrouted publish dropped", "client", cl.ID, "topic", pk.TopicName)
	return pk, packets.CodeSuccessIgnore
}

// OnWill keeps a will message that the table routes nowhere from being
// retained; its delivery is filtered like any publish.
func (h *routingHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	snap := h.b.snap.Load()
	if t := snap.byName[cl.ID]; t == nil || !snap.table.HasRoute(t.ARN, will.TopicName) {
		h.b.unrouted.Add(1)
		will.Retain = false
	}
	return will, nil
}

// OnSelectSubscribers is the per-message routing decision for what the
// direct path (publish.go) left to mochi. It runs on the publisher's
// goroutine before mochi queues anything; each allowed subscriber's copy
// goes to its own queue (queue.go), and what is left to mochi is only for
// sessions that are not connected.
func (h *routingHook) OnSelectSubscribers(subs *mqtt.Subscribers, pk packets.Packet) *mqtt.Subscribers {
	snap := h.b.snap.Load()
	src := snap.byName[pk.Origin]
	done := h.takePartial(&pk)
	var msg *packets.Packet // one copy shared by every queue
	for id, sub := range subs.Subscriptions {
		if slices.Contains(done, id) {
			delete(subs.Subscriptions, id) // queued by the direct path
			continue
		}
		if !snap.routes(src, id, sub, &pk) {
			delete(subs.Subscriptions, id)
			continue
		}
		if msg == nil {
			c := pk.Copy(false)
			msg = &c
		}
		if h.b.queues.deliver(id, msg, sub, subscriptionIDs(sub), false) {
			delete(subs.Subscriptions, id)
			continue
		}
		h.b.offline(id, pk, sub, subs)
	}
	// Only the broker's sentinel holds shared subscriptions; select none.
	clear(subs.Shared)
	clear(subs.SharedSelected)
	return subs
}

// OnSubscribe turns off mochi's retained replay for every filter (it
// cannot see who published a retained message) and remembers which
// filters are owed one, honouring MQTT 5 Retain Handling.
func (h *routingHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	filters := make([]packets.Subscription, len(pk.Filters))
	copy(filters, pk.Filters)
	var owed []packets.Subscription
	for i := range filters {
		f := &filters[i]
		_, existed := cl.State.Subscriptions.Get(f.Filter)
		if f.RetainHandling == 0 || (f.RetainHandling == 1 && !existed) {
			owed = append(owed, *f)
		}
		f.RetainHandling = 2
	}
	if len(owed) > 0 {
		h.replays.Store(cl, owed)
	}
	pk.Filters = filters
	return pk
}

// OnPacketProcessed sends the retained messages owed by a SUBSCRIBE
// (looked up in OnSubscribed) once mochi has written its SUBACK. It also
// wakes the queue writer of a client whose acknowledgement may have made
// room in its window (queue.go): mochi copies every packet into each hook
// that takes this event, for every packet read, so one hook takes it for
// both.
func (h *routingHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	h.b.clashes.putBack(cl)
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
		h.b.queues.acked(cl)
		return
	case packets.Subscribe:
	default:
		return
	}
	v, ok := h.replays.LoadAndDelete(cl)
	if !ok || err != nil {
		return
	}
	if due, ok := v.([]replay); ok {
		h.sendRetained(cl, due)
	}
}

func (h *routingHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.b.clashes.putBack(cl)
	h.replays.Delete(cl)
	h.forgetPartial(cl.ID)
}

// OnSubscribed and OnUnsubscribed (which mochi calls before its SUBACK or
// UNSUBACK, and when it drops a session's subscriptions) make the direct
// path look subscribers up afresh.
//
// OnSubscribed also looks up the retained messages the SUBSCRIBE owes:
// the new subscriptions are in place and the SUBACK not yet written, so
// a retained message published after the client got its SUBACK is
// delivered live and only live, never replayed as well. (Looked up after
// the SUBACK, as mochi does, it could be both.)
func (h *routingHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.subs.invalidate()
	v, ok := h.replays.Load(cl)
	if !ok {
		return
	}
	owed, ok := v.([]packets.Subscription)
	if !ok {
		return
	}
	var due []replay
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code ||
			!slices.ContainsFunc(owed, func(o packets.Subscription) bool { return o.Filter == f.Filter }) {
			continue
		}
		if granted, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			due = append(due, h.retainedFor(cl, granted)...)
		}
	}
	h.replays.Store(cl, due)
}

func (h *routingHook) OnUnsubscribed(*mqtt.Client, packets.Packet) { h.subs.invalidate() }

// replay is a retained message owed to a new subscription.
type replay struct {
	msg packets.Packet
	sub packets.Subscription
}

// retainedFor returns the retained messages matching sub that the table
// lets cl have.
func (h *routingHook) retainedFor(cl *mqtt.Client, sub packets.Subscription) []replay {
	snap := h.b.snap.Load()
	dst := snap.byName[cl.ID]
	if dst == nil {
		return nil
	}
	var due []replay
	for _, msg := range h.b.srv.Topics.Messages(sub.Filter) {
		if src := snap.byName[msg.Origin]; src != nil && snap.table.Allowed(src.ARN, dst.ARN, msg.TopicName) {
			due = append(due, replay{msg: msg, sub: sub})
		}
	}
	return due
}

// sendRetained sends cl the retained messages due, with the retain flag
// set, as MQTT requires for replays.
func (h *routingHook) sendRetained(cl *mqtt.Client, due []replay) {
	for _, r := range due {
		err := mochiext.SendRetained(h.b.srv, cl, r.msg, r.sub)
		if errors.Is(err, mochiext.ErrInflightFull) {
			h.b.log.Warn("retained message not replayed: inflight window full", "client", cl.ID, "topic", r.msg.TopicName)
			continue
		}
		if err != nil {
			h.b.log.Debug("retained replay failed", "client", cl.ID, "topic", r.msg.TopicName, "error", err)
			return
		}
	}
}
