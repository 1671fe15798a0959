package broker

import (
	"encoding/binary"
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// appendPublish appends pk's PUBLISH packet, encoded for MQTT version
// pk.ProtocolVersion, to b, as mochi's PublishEncode with the
// modifications its WritePacket applies (response information allowed),
// without its per-property map lookups and allocations: the writers of
// queue.go encode every delivered message. It returns false, appending
// nothing, for a packet with user properties, which mochi may leave out
// to fit the client's maximum packet size: the caller encodes those with
// mochi's encoder.
func appendPublish(b []byte, pk *packets.Packet) ([]byte, bool) {
	p := &pk.Properties
	if len(p.User) > 0 || len(pk.TopicName) > 0xffff {
		return b, false
	}
	v5 := pk.ProtocolVersion == 5
	responseTopic := p.ResponseTopic != "" && !strings.ContainsAny(p.ResponseTopic, "+#")
	plen := 0
	if v5 {
		if p.PayloadFormatFlag {
			plen += 2
		}
		if p.MessageExpiryInterval > 0 {
			plen += 5
		}
		if p.ContentType != "" {
			plen += 3 + len(p.ContentType)
		}
		if responseTopic {
			plen += 3 + len(p.ResponseTopic)
		}
		if len(p.CorrelationData) > 0 {
			plen += 3 + len(p.CorrelationData)
		}
		for _, v := range p.SubscriptionIdentifier {
			if v > 0 {
				plen += 1 + varIntLen(v)
			}
		}
		if p.TopicAliasFlag && p.TopicAlias > 0 {
			plen += 3
		}
	}
	rem := 2 + len(pk.TopicName) + len(pk.Payload)
	if pk.FixedHeader.Qos > 0 {
		rem += 2
	}
	if v5 {
		rem += varIntLen(plen) + plen
	}
	h := byte(packets.Publish<<4) | pk.FixedHeader.Qos<<1
	if pk.FixedHeader.Dup {
		h |= 1 << 3
	}
	if pk.FixedHeader.Retain {
		h |= 1
	}
	b = append(b, h)
	b = appendVarInt(b, rem)
	b = appendString(b, pk.TopicName)
	if pk.FixedHeader.Qos > 0 {
		b = binary.BigEndian.AppendUint16(b, pk.PacketID)
	}
	if v5 {
		b = appendVarInt(b, plen)
		if p.PayloadFormatFlag {
			b = append(b, packets.PropPayloadFormat, p.PayloadFormat)
		}
		if p.MessageExpiryInterval > 0 {
			b = binary.BigEndian.AppendUint32(append(b, packets.PropMessageExpiryInterval), p.MessageExpiryInterval)
		}
		if p.ContentType != "" {
			b = appendString(append(b, packets.PropContentType), p.ContentType)
		}
		if responseTopic {
			b = appendString(append(b, packets.PropResponseTopic), p.ResponseTopic)
		}
		if len(p.CorrelationData) > 0 {
			b = binary.BigEndian.AppendUint16(append(b, packets.PropCorrelationData), uint16(len(p.CorrelationData)))
			b = append(b, p.CorrelationData...)
		}
		for _, v := range p.SubscriptionIdentifier {
			if v > 0 {
				b = appendVarInt(append(b, packets.PropSubscriptionIdentifier), v)
			}
		}
		if p.TopicAliasFlag && p.TopicAlias > 0 {
			b = binary.BigEndian.AppendUint16(append(b, packets.PropTopicAlias), p.TopicAlias)
		}
	}
	return append(b, pk.Payload...), true
}

func appendString(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// appendVarInt appends n as an MQTT variable byte integer.
func appendVarInt(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func varIntLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}
