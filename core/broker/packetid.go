package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet identifiers. MQTT gives each direction of a connection its own
// packet identifiers; mochi keeps both in one map per session
// (Client.State.Inflight). While a message the broker sent waits for its
// acknowledgement, a packet from the client that happens to carry the
// same identifier meets it there:
//
//   - a SUBSCRIBE or UNSUBSCRIBE is refused (0x91, "packet identifier in
//     use"): a device that subscribes while messages reach it saw about
//     one SUBSCRIBE in a hundred refused;
//   - a QoS 1 PUBLISH deletes the broker's message from the map, which
//     then is neither resent after a reconnect nor acknowledged.
//
// clashes sets the broker's message aside while mochi processes such a
// packet (queueHook.OnPacketRead) and puts it back afterwards
// (routingHook.OnPacketProcessed, or OnDisconnect for a packet mochi
// refused unprocessed): neither packet creates an entry of its own that
// outlives its processing, and the reader processes one packet at a time.
// A QoS 2 PUBLISH keeps mochi's way: its state must stay in the map until
// its PUBREL.
type clashes struct {
	m sync.Map // *mqtt.Client -> packets.Packet set aside
	n atomic.Int64
}

// setAside takes out of cl's inflight messages the one the broker sent
// with pk's identifier, if pk is a client's packet that would meet it.
func (c *clashes) setAside(cl *mqtt.Client, pk *packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Subscribe, packets.Unsubscribe:
	case packets.Publish:
		if pk.FixedHeader.Qos != 1 {
			return
		}
	default:
		return
	}
	out, ok := cl.State.Inflight.Get(pk.PacketID)
	if !ok || !sentByBroker(&out) {
		return
	}
	cl.State.Inflight.Delete(pk.PacketID)
	if _, loaded := c.m.Swap(cl, out); !loaded {
		c.n.Add(1)
	}
}

// putBack returns what setAside took for cl, if anything.
func (c *clashes) putBack(cl *mqtt.Client) {
	if c.n.Load() == 0 {
		return
	}
	v, ok := c.m.LoadAndDelete(cl)
	if !ok {
		return
	}
	c.n.Add(-1)
	out := v.(packets.Packet)
	if _, taken := cl.State.Inflight.Get(out.PacketID); !taken {
		cl.State.Inflight.Set(out)
	}
}

// sentByBroker tells an inflight entry of the broker's own messages (a
// PUBLISH awaiting PUBACK or PUBREC, a PUBREL awaiting PUBCOMP) from one of
// the client's (a PUBREC awaiting PUBREL; PUBACK and PUBCOMP entries live
// only while mochi writes them).
func sentByBroker(pk *packets.Packet) bool {
	return pk.FixedHeader.Type == packets.Publish || pk.FixedHeader.Type == packets.Pubrel
}
