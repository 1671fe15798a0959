package broker

import (
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// dropLogInterval is how often a slow subscriber's drop count is logged.
const dropLogInterval = time.Second

// dropsHook counts every message lost because a subscriber's pending-write
// queue was full, and logs each subscriber's losses at most once per
// dropLogInterval (with the count since the last line), so an overloaded
// gateway neither loses messages silently nor floods its log.
//
// mochi drops rather than blocks here by design: blocking the publisher's
// goroutine on one slow subscriber would stall every other subscriber of
// that publisher. QoS 1/2 senders still see back-pressure through MQTT
// flow control (ReceiveMaximum) and the bounded inflight window.
type dropsHook struct {
	mqtt.HookBase
	b *Broker

	mu      sync.Mutex
	pending map[string]*dropRecord
}

type dropRecord struct {
	count  int64
	logged time.Time
}

func (h *dropsHook) ID() string { return "ggcore-drops" }

func (h *dropsHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublishDropped, mqtt.OnDisconnect:
		return true
	}
	return false
}

func (h *dropsHook) OnPublishDropped(cl *mqtt.Client, pk packets.Packet) {
	h.b.dropped.Add(1)
	now := time.Now()
	h.mu.Lock()
	if h.pending == nil {
		h.pending = make(map[string]*dropRecord)
	}
	r := h.pending[cl.ID]
	if r == nil {
		r = &dropRecord{}
		h.pending[cl.ID] = r
	}
	r.count++
	var n int64
	if now.Sub(r.logged) >= dropLogInterval {
		n, r.count, r.logged = r.count, 0, now
	}
	h.mu.Unlock()
	if n > 0 {
		h.b.log.Warn("subscriber too slow: messages dropped", "client", cl.ID, "dropped", n,
			"topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
	}
}

// OnDisconnect logs drops not yet reported and forgets the client.
func (h *dropsHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.mu.Lock()
	r := h.pending[cl.ID]
	delete(h.pending, cl.ID)
	h.mu.Unlock()
	if r != nil && r.count > 0 {
		h.b.log.Warn("subscriber too slow: messages dropped", "client", cl.ID, "dropped", r.count)
	}
}
