package mochiext

import (
	"errors"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// ErrInflightFull is SendRetained's answer when the client's QoS 1/2
// window has no room; the message is counted as an inflight drop.
var ErrInflightFull = errors.New("inflight window full")

// SendRetained sends cl the retained message msg for its subscription sub,
// as MQTT requires for a replay: the retain flag set, no topic alias, the
// subscription's identifier, the lower of the two QoS, and for QoS 1/2 a
// packet ID in cl's inflight window. An error from writing means the
// client is gone: stop sending it more.
func SendRetained(srv *mqtt.Server, cl *mqtt.Client, msg packets.Packet, sub packets.Subscription) error {
	out := msg.Copy(false)
	out.FixedHeader.Retain = true
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	out.Properties.SubscriptionIdentifier = nil
	if sub.Identifier > 0 {
		out.Properties.SubscriptionIdentifier = []int{sub.Identifier}
	}
	out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos)
	if out.FixedHeader.Qos > 0 {
		if cl.State.Inflight.Len() >= int(srv.Options.Capabilities.MaximumInflight) {
			atomic.AddInt64(&srv.Info.InflightDropped, 1)
			return ErrInflightFull
		}
		id, err := cl.NextPacketID()
		if err != nil {
			atomic.AddInt64(&srv.Info.InflightDropped, 1)
			return ErrInflightFull
		}
		out.PacketID = uint16(id)
		if cl.State.Inflight.Set(out) {
			atomic.AddInt64(&srv.Info.Inflight, 1)
			cl.State.Inflight.DecreaseSendQuota()
		}
	}
	return cl.WritePacket(out)
}
