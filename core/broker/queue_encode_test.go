package broker

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// A subscriber decodes what appendPublish writes exactly as what mochi's
// own encoder writes, for every property a PUBLISH can carry, both MQTT
// versions, every QoS and lengths that need multi-byte length fields.
func TestAppendPublishMatchesMochi(t *testing.T) {
	base := func(v byte, qos byte) packets.Packet {
		return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, ProtocolVersion: v,
			TopicName: "sensors/dev1/t", Payload: []byte("21.5"), PacketID: 7, Mods: packets.Mods{AllowResponseInfo: true}}
	}
	var cases []struct {
		name string
		pk   packets.Packet
	}
	add := func(name string, pk packets.Packet) {
		cases = append(cases, struct {
			name string
			pk   packets.Packet
		}{name, pk})
	}
	for _, v := range []byte{3, 4, 5} {
		for _, qos := range []byte{0, 1, 2} {
			add("plain", base(v, qos))
			pk := base(v, qos)
			pk.FixedHeader.Dup, pk.FixedHeader.Retain = qos > 0, true
			add("dup retain", pk)
			pk = base(v, qos)
			pk.Payload = bytes.Repeat([]byte{0xa5}, 20000)
			add("payload of 20000 bytes", pk)
			pk = base(v, qos)
			pk.Properties = packets.Properties{PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: 3600,
				ContentType: "application/json", ResponseTopic: "reply/dev1", CorrelationData: []byte{1, 2, 3},
				SubscriptionIdentifier: []int{3, 0, 200, 70000}, TopicAlias: 4, TopicAliasFlag: true}
			add("every property", pk)
			pk.Properties.ResponseTopic = "reply/+"
			add("response topic with a wildcard", pk)
			pk = base(v, qos)
			pk.TopicName = ""
			pk.Properties = packets.Properties{TopicAlias: 2, TopicAliasFlag: true, CorrelationData: bytes.Repeat([]byte{9}, 300)}
			add("alias only", pk)
			pk = base(v, qos)
			pk.TopicName = strings.Repeat("t/", 100)
			pk.Properties.PayloadFormatFlag = true
			add("long topic, payload format 0", pk)
		}
	}
	for _, c := range cases {
		var want bytes.Buffer
		if err := c.pk.PublishEncode(&want); err != nil {
			t.Fatalf("%s v%d QoS %d: mochi: %v", c.name, c.pk.ProtocolVersion, c.pk.FixedHeader.Qos, err)
		}
		got, ok := appendPublish([]byte("prefix"), &c.pk)
		if !ok || string(got[:6]) != "prefix" || !bytes.Equal(got[6:], want.Bytes()) {
			t.Errorf("%s v%d QoS %d: appendPublish (ok %t)\n% x\nwant\n% x", c.name, c.pk.ProtocolVersion, c.pk.FixedHeader.Qos, ok, got, want.Bytes())
		}
	}
	pk := base(5, 1)
	pk.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	if got, ok := appendPublish(nil, &pk); ok || len(got) != 0 {
		t.Errorf("appendPublish encoded user properties (%x); they are left to mochi's encoder", got)
	}
}
