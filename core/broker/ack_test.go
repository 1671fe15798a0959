package broker

import (
	"bytes"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestAckEncodingUnchanged checks that the acknowledgements the routing
// hook has encoded the cheap way (plainAck) are byte for byte what mochi's
// MQTT 5 encoder writes.
func TestAckEncodingUnchanged(t *testing.T) {
	user := []packets.UserProperty{{Key: "k", Val: "v"}}
	for _, typ := range []byte{packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp} {
		for _, tc := range []struct {
			name  string
			code  byte
			props packets.Properties
		}{
			{"success", packets.CodeSuccess.Code, packets.Properties{}},
			{"no matching subscribers", packets.CodeNoMatchingSubscribers.Code, packets.Properties{}},
			{"quota exceeded", packets.ErrQuotaExceeded.Code, packets.Properties{ReasonString: packets.ErrQuotaExceeded.Reason}},
			{"error without reason string", packets.ErrPacketIdentifierNotFound.Code, packets.Properties{}},
			{"user properties", packets.CodeSuccess.Code, packets.Properties{User: user}},
			{"publish properties", packets.CodeSuccess.Code, packets.Properties{ContentType: "text/plain", MessageExpiryInterval: 30}},
		} {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: typ}, PacketID: 0x1234, ReasonCode: tc.code,
				Properties: tc.props, ProtocolVersion: 5}
			if typ == packets.Pubrel {
				pk.FixedHeader.Qos = 1
			}
			want := encodeAck(t, pk)
			h := &routingHook{}
			got := encodeAck(t, h.OnPacketEncode(nil, pk))
			if !bytes.Equal(got, want) {
				t.Errorf("type %d, %s: encoded % x, want % x", typ, tc.name, got, want)
			}
		}
	}
}

func encodeAck(t *testing.T, pk packets.Packet) []byte {
	t.Helper()
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
