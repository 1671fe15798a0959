package broker

import (
	"fmt"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// orderQueue leaves a session's queued messages in the order mochi
// resends them (Inflight.GetAll) equal to the order they were queued
// (packet IDs, which wrap), moving no creation time earlier, wherever
// the creation times fall.
func TestOrderQueue(t *testing.T) {
	const epoch = int64(27413) << 16 // a multiple of 65536 s, in 2026
	for _, tc := range []struct {
		name    string
		ids     []uint16 // in queue order
		created int64    // of every message
	}{
		{"one second", seq(1, 50), epoch + 100},
		{"one second just before a multiple of 65536 s", seq(1, 50), epoch - 20},
		{"one second on the last tick before it", seq(1, 50), epoch - 1},
		{"packet IDs wrapped", append(seq(65520, 65535), seq(1, 20)...), epoch - 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := mqtt.New(nil).NewClient(nil, "test", "dev", false)
			for i, id := range tc.ids {
				cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
					PacketID: id, Created: tc.created, Payload: []byte(fmt.Sprint(i))})
			}
			orderQueue(cl)
			for i, pk := range cl.State.Inflight.GetAll(false) {
				if string(pk.Payload) != fmt.Sprint(i) {
					t.Fatalf("resend %d is message %s (packet ID %d, created %d)", i, pk.Payload, pk.PacketID, pk.Created)
				}
				if pk.Created < tc.created {
					t.Fatalf("message %s created %d, earlier than %d", pk.Payload, pk.Created, tc.created)
				}
			}
		})
	}
}

// seq returns the packet IDs from first to last.
func seq(first, last uint16) []uint16 {
	var ids []uint16
	for id := first; ; id++ {
		ids = append(ids, id)
		if id == last {
			return ids
		}
	}
}
