package broker

import (
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The direct publish path. mochi looks a live publish's subscribers up in
// its topic tree, then asks the routing hook which of them may have it
// (OnSelectSubscribers, which mochi consults only because the broker's
// sentinel shared subscription matches every topic; see New). Each
// lookup walks the tree and copies every matching node's subscriber maps,
// the sentinel's included: most of what a publish costs the publisher's
// goroutine after TLS.
//
// routingHook.OnPublish therefore delivers a live publish itself when it
// can: it looks the subscribers up in subscriberCache (mochi's answer for
// the topic, kept until any subscription changes), routes and queues the
// message for each, and tells mochi to deliver it to no one
// (CodeSuccessIgnore: mochi still acknowledges it, and calls OnPublished).
// It leaves the publish to mochi's path when that path does something it
// does not:
//
//   - retained messages (mochi retains them, and ignores nothing it must
//     retain);
//   - a QoS 1/2 publish that the table sends to a session the store keeps
//     (persist.go writes a record before the publisher's acknowledgement;
//     see persistHook.OnPublish). Other publishes stay direct while
//     stored sessions exist;
//   - inline subscriptions (none in ggcore; checked anyway);
//   - a subscriber that the queues leave to mochi (queues.deliver): one
//     that is connecting (its subscriptions may be changing), or a session
//     whose connection is closing or that ends with it. The other
//     subscribers still get the message here; a partialPublish record
//     tells OnSelectSubscribers which, so that none gets it twice.
//
// Wills and $SYS messages never pass OnPublish and keep mochi's path.

// subscriberCacheSize bounds the topics subscriberCache holds; past it
// the cache starts over.
const subscriberCacheSize = 4096

// subscriberCache holds mochi's subscribers of recently published topics.
// Every subscription change (OnSubscribed, OnUnsubscribed, which mochi
// calls before it acknowledges a SUBSCRIBE or UNSUBSCRIBE, and when it
// drops a session's subscriptions) advances gen, which invalidates every
// entry computed before.
type subscriberCache struct {
	gen atomic.Uint64
	m   sync.Map // topic -> *subscriberList
	n   atomic.Int64
}

// subscriberList is one topic's subscribers as of generation gen; never
// modified once stored.
type subscriberList struct {
	gen  uint64
	subs []subscriber
}

// subscriber is one client's merged subscription matching a topic, and
// its subscription identifiers (subscriptionIDs).
type subscriber struct {
	id  string
	sub packets.Subscription
	ids []int
}

// get returns the subscribers of topic; false when mochi has inline
// subscriptions for it, which only mochi's path serves.
func (c *subscriberCache) get(srv *mqtt.Server, topic string) ([]subscriber, bool) {
	// Read before the lookup: a change during it makes the entry stale.
	gen := c.gen.Load()
	if v, ok := c.m.Load(topic); ok {
		if l := v.(*subscriberList); l.gen == gen {
			return l.subs, true
		}
	}
	s := srv.Topics.Subscribers(topic)
	if len(s.InlineSubscriptions) > 0 {
		return nil, false
	}
	l := &subscriberList{gen: gen, subs: make([]subscriber, 0, len(s.Subscriptions))}
	for id, sub := range s.Subscriptions {
		l.subs = append(l.subs, subscriber{id: id, sub: sub, ids: subscriptionIDs(sub)})
	}
	if _, replaced := c.m.Swap(topic, l); !replaced && c.n.Add(1) > subscriberCacheSize {
		c.m.Clear()
		c.n.Store(0)
	}
	return l.subs, true
}

// invalidate makes every entry stale.
func (c *subscriberCache) invalidate() { c.gen.Add(1) }

// partialPublish records the subscribers that the direct path queued a
// publish for, when it left the others to mochi's path.
type partialPublish struct {
	topic   string
	payload *byte
	created int64
	done    []string
}

func (p *partialPublish) of(pk *packets.Packet) bool {
	return p.topic == pk.TopicName && p.payload == unsafe.SliceData(pk.Payload) && p.created == pk.Created
}

// publishDirect delivers pk from cl (thing src) to every subscriber the
// table allows, as OnSelectSubscribers would; false when it left some or
// all of them to mochi's path (see above).
func (h *routingHook) publishDirect(cl *mqtt.Client, snap *snapshot, src *Thing, pk packets.Packet) bool {
	b := h.b
	if pk.FixedHeader.Retain {
		return false
	}
	subs, ok := h.subs.get(b.srv, pk.TopicName)
	if !ok || (pk.FixedHeader.Qos > 0 && routesToStored(b.store, snap, src, subs, &pk)) {
		return false
	}
	if !cl.Net.Inline {
		// What queueHook.OnPublish would do; mochi calls no hook after
		// this one once it returns CodeSuccessIgnore.
		b.queues.pace(cl)
	}
	var msg *packets.Packet // one copy shared by every queue
	var buf [8]string
	done := buf[:0]
	left := false
	for i := range subs {
		s := &subs[i]
		if !snap.routes(src, s.id, s.sub, &pk) {
			continue
		}
		if msg == nil {
			msg = shareable(pk, cl.Net.Inline)
		}
		if b.queues.deliver(s.id, msg, s.sub, s.ids, true) {
			done = append(done, s.id)
			continue
		}
		left = true
	}
	if !left {
		return true
	}
	if len(done) > 0 {
		rec := &partialPublish{topic: pk.TopicName, payload: unsafe.SliceData(pk.Payload), created: pk.Created,
			done: slices.Clone(done)}
		if _, replaced := h.partial.Swap(pk.Origin, rec); !replaced {
			h.nPartial.Add(1)
		}
	}
	return false
}

// routesToStored tells whether the table sends pk to a session store
// keeps (none without a store). Unlike persistHook.reachesStored, which
// mochi's path asks of every subscriber, it counts only the subscribers
// the table lets have pk.
func routesToStored(store *sessionStore, snap *snapshot, src *Thing, subs []subscriber, pk *packets.Packet) bool {
	if store == nil || store.nSessions.Load() == 0 {
		return false
	}
	for i := range subs {
		s := &subs[i]
		if store.has(s.id) && snap.routes(src, s.id, s.sub, pk) {
			return true
		}
	}
	return false
}

// shareable returns the copy of pk that queues share. mochi decodes every
// packet a client sends into buffers of its own that nothing reuses, so a
// shallow copy is enough; an inline (cloud) publish's payload belongs to
// its caller and is copied.
func shareable(pk packets.Packet, inline bool) *packets.Packet {
	if inline {
		c := pk.Copy(false)
		return &c
	}
	return &pk
}

// takePartial returns the subscribers the direct path already queued pk
// for, and forgets the record.
func (h *routingHook) takePartial(pk *packets.Packet) []string {
	if h.nPartial.Load() == 0 {
		return nil
	}
	v, ok := h.partial.LoadAndDelete(pk.Origin)
	if !ok {
		return nil
	}
	h.nPartial.Add(-1)
	if p := v.(*partialPublish); p.of(pk) {
		return p.done
	}
	return nil
}

// forgetPartial drops client id's record, when mochi did not deliver the
// publish it was for.
func (h *routingHook) forgetPartial(id string) {
	if h.nPartial.Load() > 0 {
		if _, ok := h.partial.LoadAndDelete(id); ok {
			h.nPartial.Add(-1)
		}
	}
}
