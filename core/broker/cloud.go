package broker

import (
	"errors"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// CloudSource is the name the subscription table gives the cloud, as
// Source and as Target.
const CloudSource = "cloud"

// cloudClient is the client ID that messages from the cloud carry as their
// origin inside the broker. No device can take it: MQTT client IDs of
// devices are thing names, which cannot contain NUL.
const cloudClient = "\x00ggcore-cloud"

// cloudThing stands for the cloud in routing decisions.
var cloudThing = Thing{Name: CloudSource, ARN: CloudSource}

// Upstream takes a device's message routed to the cloud. It returns once
// the message is safe (spooled durably); the device's PUBACK waits for it.
type Upstream func(topic string, payload []byte) error

// toCloud hands publishes the table routes to the cloud to the upstream,
// before the device is acknowledged. A message the upstream cannot take
// (a full disk) is refused: MQTT 5 devices get PUBACK 0x97 (quota
// exceeded) and resend; MQTT 3.1.1 devices cannot be told, so it is
// counted as dropped and logged.
func (b *Broker) toCloud(cl *mqtt.Client, pk packets.Packet) error {
	if b.upstream == nil || cl.ID == cloudClient {
		return nil
	}
	snap := b.snap.Load()
	src := snap.byName[cl.ID]
	if src == nil || !snap.table.Allowed(src.ARN, CloudSource, pk.TopicName) {
		return nil
	}
	if err := b.upstream(pk.TopicName, pk.Payload); err != nil {
		b.drops.total.Add(1)
		b.log.Error("message for the cloud not accepted", "client", cl.ID, "topic", pk.TopicName, "error", err)
		return packets.ErrQuotaExceeded
	}
	return nil
}

// FromCloud publishes a message received from the cloud into the broker
// as source "cloud": the table decides which devices get it.
func (b *Broker) FromCloud(topic string, payload []byte, qos byte) error {
	if b.cloud == nil {
		return errors.New("broker: not started")
	}
	return b.srv.InjectPacket(b.cloud, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(qos, 1)},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(min(qos, 1)),
	})
}
