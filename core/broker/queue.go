package broker

import (
	"bytes"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Flow control. Every message for a connected subscriber goes through a
// queue of its own (subQueue), owned by ggcore rather than mochi:
//
//   - the publisher's goroutine only appends to the subscriber's queue
//     (OnSelectSubscribers removes the subscriber from mochi's list), so a
//     slow or stalled subscriber never holds up a publisher or the other
//     subscribers of its messages;
//   - one writer goroutine per subscriber, started when its queue has
//     messages and ended when it is empty, sends them in order, in
//     batches of up to writeBatch bytes per write, QoS 1/2 messages only
//     while the subscriber's window (its MQTT 5 Receive Maximum, at most
//     Limits.MaxInflight) has room; acknowledgements wake it;
//   - each queue is bounded in messages and bytes (Limits.QueueMessages,
//     QueueBytes). When one is full, the oldest QoS 0 message queued is
//     dropped to make room; with none, the new message is dropped. Every
//     drop is counted per subscriber and logged at most once a second
//     (drops.go). A publisher is never told: its message may have
//     reached every other subscriber, and a refusal would make it send
//     them duplicates;
//   - all queues together are bounded by Limits.TotalQueueBytes. Past
//     nine tenths of it, a publisher's next publish waits (at most
//     Limits.PublishWait) for the writers to catch up: the only
//     back-pressure publishers feel, and bounded, so that stalled
//     subscribers cannot freeze the broker. Past the bound, messages for
//     queued subscribers are dropped as above.
//
// A persistent session that is not connected keeps its queue: what it
// held at the disconnect and every QoS 1/2 message since (QoS 0 messages
// are not kept for it), within the same bounds, for its next connection,
// after the inflight messages mochi resends. All such queues together
// take at most half of Limits.TotalQueueBytes, so that devices that stay
// away never make publishers wait.
//
// For a session the store keeps (persist.go), every QoS 1/2 message put
// in its queue is stored with it (storeQueued) before it can leave the
// queue, and its record is replaced by the inflight record in one write
// when it is sent; a message dropped from the queue is unstored. A crash
// thus loses no acknowledged message of a persistent session, whether it
// waited in the queue of a connected subscriber or of one that went
// offline; restore puts such messages back in the queue, in order.
// Sessions that are not stored cost nothing more.

// writeBatch is how many bytes of queued packets one write may carry.
const writeBatch = 32 << 10

// entryOverhead approximates the memory a queued message costs beyond its
// topic and payload.
const entryOverhead = 96

// lingerTime is how long a writer whose queue is empty waits for more
// before it ends.
const lingerTime = 5 * time.Millisecond

// retryInterval is how often a writer whose window is full checks again
// without being woken (an acknowledgement normally wakes it).
const retryInterval = time.Second

// gatherTime is how long a writer woken by the first acknowledgement after
// its window was full waits for more, unless an eighth of the window is
// free sooner: a subscriber working through a full window then gets its
// messages in batches rather than one write per acknowledgement.
const gatherTime = 2 * time.Millisecond

// queued is one message in a subscriber's queue. msg is shared by every
// subscriber of the message and never modified.
type queued struct {
	msg *packets.Packet
	qos byte
	// fwdRetained and retainAsPublished keep the retain flag, as mochi's
	// own delivery would (retainAsPublished for MQTT 5 subscribers).
	fwdRetained, retainAsPublished bool
	ids                            []int // subscription identifiers
	size                           int64
	// key is the message's record in the session store (storeQueued),
	// 0 when it has none.
	key  uint64
	dead bool // dropped to make room
}

// subQueue is one subscriber's queue.
type subQueue struct {
	id string

	// wmu is held by the writer while it turns queued messages into
	// packets (and inflight messages) for its connection, and by detach:
	// once detach has it, no message becomes an inflight message of the
	// old connection. Publishers never take it. Lock order: wmu, mu.
	wmu sync.Mutex
	mu  sync.Mutex
	// cl is the connection the writer sends to; nil while none is
	// established.
	cl *mqtt.Client
	// connecting is set from the CONNECT of a connection until its
	// session is established: messages for it wait in the queue.
	connecting bool
	// ending is connecting for a clean start: the session begins without
	// subscriptions, so what arrives meanwhile was routed by those of the
	// session it replaces (mochi drops them only after the CONNECT's
	// hooks ran) and is discarded.
	ending  bool
	entries []queued // entries[head:] are queued, oldest first
	head    int
	live    int   // entries not dead
	qos0    int   // live QoS 0 entries
	bytes   int64 // size of the live entries
	running bool  // a writer goroutine serves the queue
	// removed is set when disconnected took the queue, empty, out of the
	// map: deliver then uses the queue that replaced it (lockQueue).
	removed bool
	// idle is set while the writer waits for messages: only then does a
	// new message wake it.
	idle bool
	wake chan struct{} // wakes the writer: set at creation, never changed
	// needAck is set while the writer waits for room in its window: only
	// then does an acknowledgement wake it, once the connection has at
	// most wakeAt messages unacknowledged.
	needAck atomic.Bool
	wakeAt  atomic.Int32
}

// queues holds every subscriber's queue and the broker-wide accounting.
type queues struct {
	b      *Broker
	m      sync.Map // client ID -> *subQueue
	bytes  atomic.Int64
	bufs   sync.Pool
	closed atomic.Bool
}

func newQueues(b *Broker) *queues {
	return &queues{b: b, bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

func (qs *queues) get(id string) *subQueue {
	if v, ok := qs.m.Load(id); ok {
		return v.(*subQueue)
	}
	return nil
}

func (qs *queues) getOrCreate(id string) *subQueue {
	if q := qs.get(id); q != nil {
		return q
	}
	v, _ := qs.m.LoadOrStore(id, &subQueue{id: id, wake: make(chan struct{}, 1)})
	return v.(*subQueue)
}

// entrySize is what a queued message counts against the bounds.
func entrySize(pk *packets.Packet) int64 {
	return int64(len(pk.Payload)+len(pk.TopicName)+len(pk.Properties.ResponseTopic)+
		len(pk.Properties.CorrelationData)+len(pk.Properties.ContentType)) + entryOverhead
}

// window is how many QoS 1/2 messages may be unacknowledged at cl.
func (qs *queues) window(cl *mqtt.Client) int {
	w := int(qs.b.limits.MaxInflight)
	if rm := int(cl.Properties.Props.ReceiveMaximum); rm > 0 && rm < w {
		w = rm
	}
	return max(w, 1)
}

// deliver takes a message for subscriber id from a publisher's goroutine.
// It returns false when the subscriber has no queue to take it: a session
// whose connection is closing, or that ends with its connection (not kept
// offline, nothing queued); mochi then handles it as for any session that
// is not connected (Broker.offline). The direct publish path (direct) also
// leaves mochi a subscriber that is connecting: its subscriptions may be
// changing (publish.go), and one its (possibly stale) list routes through
// a subscription the connection no longer has. It returns true, having
// queued nothing, for a message the subscriber must not get: routed by a
// subscription it no longer has (mochi's path), or QoS 0 for a session
// that is not connected.
//
// ids are the subscription's identifiers (subscriptionIDs), which the
// entry shares and never modifies.
func (qs *queues) deliver(id string, msg *packets.Packet, sub packets.Subscription, ids []int, direct bool) bool {
	e := queued{msg: msg, qos: min(msg.FixedHeader.Qos, sub.Qos, qs.b.srv.Options.Capabilities.MaximumQos), size: entrySize(msg)}
	q := qs.get(id)
	kept := false // id is known to be kept offline
	if q == nil {
		if e.qos == 0 || !qs.keptOffline(id) {
			return false
		}
		q, kept = qs.getOrCreate(id), true
	}
	e.fwdRetained, e.retainAsPublished, e.ids = sub.FwdRetainedFlag, sub.RetainAsPublished, ids
	// A stored session's copy is encoded here, off q.mu, and submitted
	// below, before the entry can leave the queue.
	var rec *op
	if e.qos > 0 {
		rec = qs.b.queuedRecord(id, &e)
	}
	if q = qs.lockQueue(id, q, e.qos); q == nil {
		return false
	}
	if q.ending || (q.cl != nil && !subscribed(q.cl, &sub)) {
		// Routed by a subscription the session no longer has. The direct
		// path's list may be older than mochi's answer now, which may
		// still hold the subscriber through another of its filters: mochi's
		// path looks again.
		q.mu.Unlock()
		return !direct
	}
	offline := q.cl == nil && !q.connecting
	if offline && e.qos == 0 {
		// Not kept for a session that is not connected (nor by mochi).
		q.mu.Unlock()
		return true
	}
	if (offline && q.live == 0 && !kept && !qs.keptOffline(id)) || (direct && q.connecting) {
		q.mu.Unlock()
		return false
	}
	if !q.admitLocked(qs, e.size, msg.TopicName, offline) {
		q.mu.Unlock()
		qs.b.drops.add(q.id, "queue full: message dropped", msg.TopicName, e.qos)
		return true
	}
	if rec != nil {
		// Ordered before the publish's pending record is deleted
		// (persistHook.OnPublished) and before the writer's replacement
		// of this record by an inflight one.
		qs.b.submitQueued(*rec)
	}
	q.pushLocked(qs, e)
	q.kickLocked(qs)
	q.mu.Unlock()
	return true
}

// lockQueue locks id's queue q. A queue that disconnected took out of the
// map (empty, its session gone) is not used: the one that replaced it is
// looked up, or made for a session kept offline, instead; nil when there
// is none.
func (qs *queues) lockQueue(id string, q *subQueue, qos byte) *subQueue {
	for {
		if q == nil {
			if qos == 0 || !qs.keptOffline(id) {
				return nil
			}
			q = qs.getOrCreate(id)
		}
		q.mu.Lock()
		if !q.removed {
			return q
		}
		q.mu.Unlock()
		q = qs.get(id)
	}
}

// keptOffline reports whether id is a session that outlives its
// connection and is not connected: its QoS 1/2 messages wait in its queue.
func (qs *queues) keptOffline(id string) bool {
	cl, ok := qs.b.srv.Clients.Get(id)
	return ok && cl.Closed() && persistent(cl)
}

// subscribed reports whether cl still has sub, which a publisher's lookup
// found (mochi's, or the direct path's cache) and which may have gone
// since: unsubscribed, or dropped by a clean start that took the session
// over. sub merges every filter of cl's that matches the topic; any will
// do.
func subscribed(cl *mqtt.Client, sub *packets.Subscription) bool {
	if _, ok := cl.State.Subscriptions.Get(sub.Filter); ok {
		return true
	}
	for f := range sub.Identifiers {
		if _, ok := cl.State.Subscriptions.Get(f); ok {
			return true
		}
	}
	return false
}

// subscriptionIDs returns the subscription identifiers a message matching
// sub carries, sorted, as mochi's delivery sends them; nil for none. mochi
// keeps an identifier of 0 for each filter that has none, which no
// encoder writes; they are left out.
func subscriptionIDs(sub packets.Subscription) []int {
	var ids []int
	for _, n := range sub.Identifiers {
		if n > 0 {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	return slices.Clip(ids)
}

// admitLocked makes room for an entry of size bytes, dropping the oldest
// QoS 0 entries as needed; false when there is none to drop. q.mu is held.
// A queue whose session is not connected (offline) may take the queues'
// total only to half its bound: what offline sessions hold never makes
// publishers wait (pace), which begins at nine tenths.
func (q *subQueue) admitLocked(qs *queues, size int64, topic string, offline bool) bool {
	lim := &qs.b.limits
	total := lim.TotalQueueBytes
	if offline {
		total /= 2
	}
	for q.live > 0 && (q.live >= lim.QueueMessages || q.bytes+size > lim.QueueBytes ||
		qs.bytes.Load()+size > total) {
		if q.qos0 == 0 || !q.evictOldestQoS0(qs) {
			return false
		}
		qs.b.drops.add(q.id, "queue full: oldest QoS 0 message dropped", topic, 0)
	}
	return q.live > 0 || qs.bytes.Load()+size <= total
}

// pushLocked appends e; q.mu is held.
func (q *subQueue) pushLocked(qs *queues, e queued) {
	q.entries = append(q.entries, e)
	q.live++
	if e.qos == 0 {
		q.qos0++
	}
	q.bytes += e.size
	qs.bytes.Add(e.size)
}

// restored puts a message read from the session store at the end of id's
// queue, which no connection serves yet; false when the queue is full.
func (qs *queues) restored(id string, e queued) bool {
	q := qs.getOrCreate(id)
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.admitLocked(qs, e.size, e.msg.TopicName, true) {
		return false
	}
	q.pushLocked(qs, e)
	return true
}

// holds reports whether id's queue holds a message like pk (same origin,
// topic, creation time and payload).
func (qs *queues) holds(id string, pk packets.Packet) bool {
	q := qs.get(id)
	if q == nil {
		return false
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := q.head; i < len(q.entries); i++ {
		if m := q.entries[i].msg; !q.entries[i].dead && m.Origin == pk.Origin && m.TopicName == pk.TopicName &&
			m.Created == pk.Created && string(m.Payload) == string(pk.Payload) {
			return true
		}
	}
	return false
}

// evictOldestQoS0 drops the oldest live QoS 0 entry; q.mu is held.
func (q *subQueue) evictOldestQoS0(qs *queues) bool {
	for i := q.head; i < len(q.entries); i++ {
		e := &q.entries[i]
		if !e.dead && e.qos == 0 {
			e.dead = true
			e.msg, e.ids = nil, nil
			q.live--
			q.qos0--
			q.bytes -= e.size
			qs.bytes.Add(-e.size)
			return true
		}
	}
	return false
}

// kickLocked starts the writer, or wakes it if it waits for messages;
// q.mu is held.
func (q *subQueue) kickLocked(qs *queues) {
	if q.cl == nil || q.live == 0 {
		return
	}
	if q.running {
		if q.idle {
			q.idle = false
			q.signal()
		}
		return
	}
	q.running = true
	go qs.write(q, q.cl)
}

// signal wakes the writer, whatever it waits for.
func (q *subQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop removes the oldest entry; q.mu is held and q.live > 0.
func (q *subQueue) pop(qs *queues) queued {
	for {
		e := q.entries[q.head]
		q.entries[q.head] = queued{}
		q.head++
		if q.head == len(q.entries) {
			q.entries, q.head = q.entries[:0], 0
			if cap(q.entries) > 1024 {
				q.entries = nil // release a burst's memory
			}
		} else if q.head >= 1024 && q.head*2 >= len(q.entries) {
			n := copy(q.entries, q.entries[q.head:])
			clear(q.entries[n:])
			q.entries, q.head = q.entries[:n], 0
		}
		if e.dead {
			continue
		}
		q.live--
		if e.qos == 0 {
			q.qos0--
		}
		q.bytes -= e.size
		qs.bytes.Add(-e.size)
		return e
	}
}

// clearLocked discards every queued entry; q.mu is held.
func (q *subQueue) clearLocked(qs *queues) {
	qs.bytes.Add(-q.bytes)
	q.entries, q.head, q.live, q.qos0, q.bytes = nil, 0, 0, 0, 0
}

// front returns the oldest live entry; q.mu is held and q.live > 0.
func (q *subQueue) front() *queued {
	for q.entries[q.head].dead {
		q.entries[q.head] = queued{}
		q.head++
	}
	return &q.entries[q.head]
}

// write is q's writer for connection cl: it sends what q holds, in
// order, while cl is q's connection, and ends when q is empty.
func (qs *queues) write(q *subQueue, cl *mqtt.Client) {
	buf := qs.bufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 4*writeBatch {
			buf.Reset()
			qs.bufs.Put(buf)
		}
	}()
	window := qs.window(cl)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// wait waits for a wake-up or d; it reports whether it was woken.
	wait := func(d time.Duration) bool {
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-q.wake:
			return true
		case <-timer.C:
			return false
		}
	}
	var batch []queued
	linger := true
	for {
		buf.Reset()
		var n int
		var blocked, empty bool
		n, blocked, empty, batch = qs.take(q, cl, window, buf, batch, linger)
		if empty {
			// Wait a moment for more before ending: a subscriber that
			// keeps up with its publishers would otherwise get a new
			// writer for every message.
			linger = false
			if wait(lingerTime) {
				linger = true
			}
			continue
		}
		linger = true
		if len(batch) > 0 { // messages taken, n of them encoded
			if n == 0 {
				continue
			}
			if err := qs.send(cl, buf.Bytes(), n); err != nil {
				// The connection is gone: QoS 1/2 messages sent are in
				// the session's inflight messages; the writer of the
				// next connection sends the rest.
				q.mu.Lock()
				if q.cl == cl {
					q.cl = nil
				}
				q.running = false
				q.kickLocked(qs)
				q.mu.Unlock()
				return
			}
			continue
		}
		if !blocked {
			return // take ended the writer
		}
		batch = batch[:0]
		if wait(retryInterval) && window >= 8 {
			// Woken by an acknowledgement: gather more before sending.
			threshold := window - window/8
			q.wakeAt.Store(int32(threshold))
			q.needAck.Store(true)
			if cl.State.Inflight.Len() > threshold {
				wait(gatherTime)
			}
			q.needAck.Store(false)
		}
	}
}

// take moves queued messages into buf, encoded for cl, up to writeBatch
// bytes; QoS 1/2 messages become cl's inflight messages. It returns how
// many packets it encoded, and, when none, whether the writer must wait
// for room in the window (blocked) rather than end. Publishers wait for
// q.mu only while entries are unlinked, not while they are encoded.
//
// With linger, an empty queue does not end the writer: take reports it
// as blocked without waiting, so that the writer yields once before it
// ends (a subscriber that keeps up with its publishers would otherwise
// start a writer for every message).
func (qs *queues) take(q *subQueue, cl *mqtt.Client, window int, buf *bytes.Buffer, batch []queued, linger bool) (n int, blocked, empty bool, _ []queued) {
	q.wmu.Lock()
	defer q.wmu.Unlock()
	q.mu.Lock()
	q.idle = false
	batch = batch[:0]
	var size int64
	inflight := -1
	for size < writeBatch && q.live > 0 && q.cl == cl && !cl.Closed() {
		e := q.front()
		if e.qos > 0 {
			if inflight < 0 {
				inflight = cl.State.Inflight.Len()
			}
			if inflight >= window {
				// Ask for a wake-up first, then look again: an
				// acknowledgement in between sees the request.
				q.wakeAt.Store(int32(window - 1))
				q.needAck.Store(true)
				if inflight = cl.State.Inflight.Len(); inflight >= window {
					break
				}
				q.needAck.Store(false)
			}
			inflight++
		}
		e2 := q.pop(qs)
		size += e2.size
		batch = append(batch, e2)
	}
	if len(batch) == 0 {
		defer q.mu.Unlock()
		if q.cl == cl && !cl.Closed() && !qs.closed.Load() {
			if q.live > 0 {
				return 0, true, false, batch
			}
			if linger {
				q.idle = true
				return 0, false, true, batch
			}
		}
		q.running = false
		if q.cl != cl {
			q.kickLocked(qs) // a new connection took the queue over
		}
		return 0, false, false, batch
	}
	q.mu.Unlock()
	now := time.Now().Unix()
	for i := range batch {
		if qs.encode(cl, batch[i], buf, now) {
			n++
		}
		batch[i] = queued{}
	}
	return n, false, false, batch
}

// encode appends e's PUBLISH for cl to buf, as mochi's own delivery would
// build it, and makes a QoS 1/2 message one of cl's inflight messages. It
// returns false for a message it drops: expired, or larger than cl takes.
func (qs *queues) encode(cl *mqtt.Client, e queued, buf *bytes.Buffer, now int64) bool {
	srv := qs.b.srv
	out := *e.msg // shallow: fields are replaced below, never modified in place
	out.FixedHeader.Qos = e.qos
	if !e.fwdRetained && (!e.retainAsPublished || cl.Properties.ProtocolVersion < 5) {
		out.FixedHeader.Retain = false
	}
	if len(e.ids) > 0 {
		out.Properties.SubscriptionIdentifier = e.ids
	}
	if out.Expiry > 0 {
		if out.Expiry < now {
			qs.b.log.Debug("queued message expired before delivery", "client", cl.ID, "topic", out.TopicName)
			qs.b.unstoreQueued(cl.ID, e.key)
			return false
		}
		out.Properties.MessageExpiryInterval = uint32(max(out.Expiry-now, 1))
	}
	if out.FixedHeader.Qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			qs.b.drops.add(cl.ID, "no packet ID free", out.TopicName, out.FixedHeader.Qos)
			qs.b.unstoreQueued(cl.ID, e.key)
			return false
		}
		out.PacketID = uint16(id)
	}
	// The wire copy may carry a topic alias; the inflight copy, which a
	// later connection resends, never does.
	wire := out
	wire.ProtocolVersion = cl.Properties.ProtocolVersion
	wire.Mods.MaxSize = cl.Properties.Props.MaximumPacketSize
	// As mochi's WritePacket: response topic and correlation data go out.
	wire.Mods.AllowResponseInfo = true
	wire.Mods.DisallowProblemInfo = cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0
	if cl.Properties.Props.TopicAliasMaximum > 0 {
		alias, exists := cl.State.TopicAliases.Outbound.Set(out.TopicName)
		if alias > 0 {
			wire.Properties.TopicAlias, wire.Properties.TopicAliasFlag = alias, true
			if exists {
				wire.TopicName = ""
			}
		}
	}
	start := buf.Len()
	var err error
	if p, ok := appendPublish(buf.AvailableBuffer(), &wire); ok {
		buf.Write(p)
	} else {
		err = wire.PublishEncode(buf)
	}
	if err != nil || (wire.Mods.MaxSize > 0 && uint32(buf.Len()-start) > wire.Mods.MaxSize) {
		buf.Truncate(start)
		qs.b.drops.add(cl.ID, "message larger than the client's maximum packet size", out.TopicName, out.FixedHeader.Qos)
		qs.b.unstoreQueued(cl.ID, e.key)
		return false
	}
	if out.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Set(out) {
			atomic.AddInt64(&srv.Info.Inflight, 1)
			qs.b.queuedForSession(cl, out, e.key)
		} else {
			qs.b.unstoreQueued(cl.ID, e.key)
		}
		cl.State.Inflight.DecreaseSendQuota()
	}
	return true
}

// send writes n encoded packets to cl in one write, serialised with
// mochi's own writes by the client's lock.
func (qs *queues) send(cl *mqtt.Client, p []byte, n int) error {
	cc := corkOf(cl)
	cl.Lock()
	var err error
	if cl.Closed() || cl.Net.Conn == nil {
		err = mqtt.ErrConnectionClosed
	} else {
		// Deliveries are never held back (cork.go); acknowledgements held
		// go out first, in the same write.
		if cc != nil {
			cc.bypass.Add(1)
		}
		_, err = cl.Net.Conn.Write(p)
		if cc != nil {
			cc.bypass.Add(-1)
		}
	}
	cl.Unlock()
	if err != nil {
		return err
	}
	info := qs.b.srv.Info
	atomic.AddInt64(&info.BytesSent, int64(len(p)))
	atomic.AddInt64(&info.PacketsSent, int64(n))
	atomic.AddInt64(&info.MessagesSent, int64(n))
	return nil
}

// attach makes cl the connection its queue sends to, once mochi has sent
// its CONNACK and resent the session's inflight messages.
func (qs *queues) attach(cl *mqtt.Client) {
	q := qs.getOrCreate(cl.ID)
	q.mu.Lock()
	q.cl, q.connecting, q.ending = cl, false, false
	if q.running {
		q.signal() // the writer of the old connection hands over
	}
	q.kickLocked(qs)
	q.mu.Unlock()
}

// detach stops sending to the connection replaced by a new one for the
// same client ID; clean discards what is queued, as the session ends.
// It runs before mochi hands the old session's inflight messages to the
// new connection, so none is added to the old one after that.
func (qs *queues) detach(id string, clean bool) {
	q := qs.getOrCreate(id)
	q.wmu.Lock()
	q.mu.Lock()
	q.cl, q.connecting, q.ending = nil, true, clean
	if clean {
		q.clearLocked(qs)
	}
	q.mu.Unlock()
	q.wmu.Unlock()
}

// disconnected stops sending to cl; expire discards the queue with the
// session.
func (qs *queues) disconnected(cl *mqtt.Client, expire bool) {
	q := qs.get(cl.ID)
	if q == nil {
		return
	}
	q.mu.Lock()
	if q.cl == cl {
		q.cl = nil
	}
	if expire && !cl.IsTakenOver() {
		q.clearLocked(qs)
	}
	if q.cl == nil && q.live == 0 && !q.connecting && qs.m.CompareAndDelete(cl.ID, q) {
		q.removed = true
	}
	if q.running {
		q.signal()
	}
	q.mu.Unlock()
}

// forget discards a session's queue.
func (qs *queues) forget(id string) {
	q := qs.get(id)
	if q == nil {
		return
	}
	q.mu.Lock()
	q.clearLocked(qs)
	q.cl, q.connecting, q.ending = nil, false, false
	qs.m.CompareAndDelete(id, q)
	q.mu.Unlock()
}

// acked wakes cl's writer if it waits for room in its window, which an
// acknowledgement may have made (called from routingHook.OnPacketProcessed,
// after mochi processed a PUBACK, PUBREC or PUBCOMP).
func (qs *queues) acked(cl *mqtt.Client) {
	if q := qs.get(cl.ID); q != nil && q.needAck.Load() && cl.State.Inflight.Len() <= int(q.wakeAt.Load()) &&
		q.needAck.CompareAndSwap(true, false) {
		q.signal()
	}
}

// purge drops the queued messages for id that keep reports false for.
func (qs *queues) purge(id string, keep func(*packets.Packet) bool) {
	q := qs.get(id)
	if q == nil {
		return
	}
	q.mu.Lock()
	for i := q.head; i < len(q.entries); i++ {
		e := &q.entries[i]
		if e.dead || keep(e.msg) {
			continue
		}
		e.dead = true
		e.msg, e.ids = nil, nil
		q.live--
		if e.qos == 0 {
			q.qos0--
		}
		q.bytes -= e.size
		qs.bytes.Add(-e.size)
		qs.b.unstoreQueued(id, e.key)
	}
	q.mu.Unlock()
}

// nearFull reports whether all queues together are past nine tenths of
// their bound.
func (qs *queues) nearFull() bool {
	return qs.bytes.Load() > qs.b.limits.TotalQueueBytes/10*9
}

// pace holds a publisher, at most Limits.PublishWait, while the queues
// are near their bound.
func (qs *queues) pace(cl *mqtt.Client) {
	if !qs.nearFull() {
		return
	}
	deadline := time.Now().Add(qs.b.limits.PublishWait)
	pause := 100 * time.Microsecond
	for qs.nearFull() && !cl.Closed() && !qs.closed.Load() && time.Now().Before(deadline) {
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// queueHook connects the queues to mochi's events.
type queueHook struct {
	mqtt.HookBase
	qs *queues
}

func (h *queueHook) ID() string { return "ggcore-queues" }

func (h *queueHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired,
		mqtt.OnPacketRead, mqtt.OnPublish, mqtt.OnPublishDropped:
		return true
	}
	return false
}

func (h *queueHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.qs.detach(cl.ID, pk.Connect.Clean)
}

func (h *queueHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if !cl.Closed() {
		h.qs.attach(cl)
	}
}

func (h *queueHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.qs.disconnected(cl, expire)
}

func (h *queueHook) OnClientExpired(cl *mqtt.Client) { h.qs.forget(cl.ID) }

// OnPacketRead holds back the acknowledgement mochi is about to write
// for pk until the connection's reader waits for input (cork.go), so
// that the acknowledgements of packets read together go out together. It
// also sets aside an inflight message whose identifier pk reuses
// (packetid.go).
func (h *queueHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.qs.b.clashes.setAside(cl, &pk)
	if acknowledged(&pk) {
		if cc := corkOf(cl); cc != nil {
			cc.corked.Store(true)
		}
	}
	return pk, nil
}

// OnPublishDropped counts what mochi's own delivery (to a session not
// using its queue) could not queue.
func (h *queueHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.qs.b.drops.add(cl.ID, "mochi's outbound queue full", pk.TopicName, pk.FixedHeader.Qos)
}

// OnPublish paces a publisher while the queues are near their bound.
func (h *queueHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline {
		h.qs.pace(cl)
	}
	return pk, nil
}

// queuedForSession tells the session store about a message that became
// one of cl's inflight messages, as mochi's own delivery does; key is its
// record as a queued message (0: none), replaced in the same write.
func (b *Broker) queuedForSession(cl *mqtt.Client, pk packets.Packet, key uint64) {
	if b.store != nil {
		b.sentFromQueue(cl, pk, key)
	}
}

// offline handles a message that no queue took (deliver): one for a
// session whose connection is closing, or that ends with its connection.
// mochi keeps QoS 1/2 messages as the session's inflight messages, up to
// Limits.MaxInflight; past that this counts and logs the drop (mochi
// would log every one) and takes the subscriber off the list.
func (b *Broker) offline(id string, pk packets.Packet, sub packets.Subscription, subs *mqtt.Subscribers) {
	cl, ok := b.srv.Clients.Get(id)
	if !ok || min(pk.FixedHeader.Qos, sub.Qos) == 0 {
		return
	}
	if cl.Net.Conn == nil || cl.Closed() {
		if cl.State.Inflight.Len() >= int(b.limits.MaxInflight) {
			b.drops.add(id, "offline session's queue full", pk.TopicName, min(pk.FixedHeader.Qos, sub.Qos))
			delete(subs.Subscriptions, id)
		}
	}
}
