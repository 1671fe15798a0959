package broker

import (
	"slices"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// orderHook makes a resumed session's queued messages go out in the
// order they were queued, as MQTT requires of resends [MQTT-4.6.0-1].
// mochi resends a session's queue sorted by creation time in whole
// seconds, in no fixed order within a second; restored or not, a queue
// filled within one second would arrive shuffled. Before mochi takes the
// session over, the hook gives the queued publishes strictly increasing
// creation times in packet ID order (the order mochi assigned them),
// moving none earlier, so none expires sooner.
type orderHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *orderHook) ID() string { return "ggcore-resend-order" }

func (h *orderHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

// OnSessionEstablish runs before mochi inherits the old session.
func (h *orderHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return
	}
	if old, ok := h.b.srv.Clients.Get(cl.ID); ok {
		orderQueue(old)
	}
}

// orderQueue renumbers the creation times of cl's queued publishes.
func orderQueue(cl *mqtt.Client) {
	var q []packets.Packet
	for _, pk := range cl.State.Inflight.GetAll(false) {
		if pk.FixedHeader.Type == packets.Publish {
			q = append(q, pk)
		}
	}
	if len(q) < 2 {
		return
	}
	slices.SortFunc(q, func(a, b packets.Packet) int { return int(a.PacketID) - int(b.PacketID) })
	// Packet IDs wrap: the queue starts after the largest gap between
	// consecutive IDs (counting the gap from the last back to the first).
	start, gap := 0, int(q[0].PacketID)+0x10000-int(q[len(q)-1].PacketID)
	for i := 1; i < len(q); i++ {
		if d := int(q[i].PacketID) - int(q[i-1].PacketID); d > gap {
			start, gap = i, d
		}
	}
	q = append(q[start:], q[:start]...)
	created := ascending(q, 0)
	// mochi sorts by the low 16 bits of the creation time: times that
	// cross a multiple of 65536 s would sort their tail first. Such a
	// run starts at that multiple instead, later by less than the run
	// spans.
	if wraps(created) {
		created = ascending(q, (created[0]|0xffff)+1)
	}
	for i, pk := range q {
		if created[i] != pk.Created {
			pk.Created = created[i]
			cl.State.Inflight.Set(pk)
		}
	}
}

// ascending returns strictly increasing creation times for q, none
// earlier than its packet's own nor than from.
func ascending(q []packets.Packet, from int64) []int64 {
	out := make([]int64, len(q))
	prev := from - 1
	for i, pk := range q {
		out[i] = max(pk.Created, prev+1)
		prev = out[i]
	}
	return out
}

// wraps reports whether the low 16 bits of the increasing times in
// created go down somewhere.
func wraps(created []int64) bool {
	for i := 1; i < len(created); i++ {
		if uint16(created[i]) < uint16(created[i-1]) {
			return true
		}
	}
	return false
}
