package iotbroker

import (
	"fmt"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// publishHook checks iot:Publish on every PUBLISH a client sends.
//
// The decision is taken in OnPacketRead, where the whole packet is known:
// an MQTT 3.1.1 client that is refused is disconnected there (3.1.1 has
// no way to refuse one message; AWS IoT Core closes the connection), for
// every QoS. For MQTT 5 the decision is handed to OnACLCheck, where mochi
// drops a refused QoS 0 message silently and answers a refused QoS 1 or 2
// one with PUBACK or PUBREC 0x87, keeping the connection.
//
// A topic alias (MQTT 5) is resolved first, so the check is always on the
// topic the message goes to.
type publishHook struct {
	mqtt.HookBase
	b *Broker
}

func (h *publishHook) ID() string { return "ggcloud-publish" }

func (h *publishHook) Provides(b byte) bool {
	return b == mqtt.OnPacketRead || b == mqtt.OnACLCheck
}

// errPublishRefused closes an MQTT 3.1.1 connection whose PUBLISH was
// refused: mochi ends a connection whose OnPacketRead rejects a packet.
var errPublishRefused = fmt.Errorf("%w: iot:Publish not allowed", packets.ErrRejectPacket)

func (h *publishHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	s := h.b.sessionOf(cl)
	if s == nil {
		return pk, errPublishRefused // superseded by a newer connection
	}
	if a := pk.Properties.TopicAlias; pk.Properties.TopicAliasFlag && a > 0 &&
		a <= h.b.srv.Options.Capabilities.TopicAliasMaximum && cl.Properties.ProtocolVersion == 5 {
		// What mochi does next, done first: record the alias of a named
		// topic, or name the topic of an alias.
		pk.TopicName = cl.State.TopicAliases.Inbound.Set(a, pk.TopicName)
	}
	allowed := s.allow(actionPublish, h.b.topicARN(pk.TopicName))
	if !allowed && cl.Properties.ProtocolVersion < 5 {
		return pk, errPublishRefused
	}
	s.pubTopic, s.pubAllowed, s.pubPending = pk.TopicName, allowed, true
	return pk, nil
}

// OnACLCheck answers mochi's two questions. May the client publish on a
// topic: what OnPacketRead decided. May it subscribe to a filter, or
// receive a message: yes here, as mochi asks both with the same call;
// subscribe.go and receive.go decide them.
func (h *publishHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if !write {
		return true
	}
	s := h.b.sessionOf(cl)
	if s == nil {
		return false
	}
	if s.pubPending && s.pubTopic == topic {
		s.pubPending = false
		return s.pubAllowed
	}
	return s.allow(actionPublish, h.b.topicARN(topic))
}
