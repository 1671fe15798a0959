package broker

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
)

// A retained message published once the subscriber holds its SUBACK is
// new to that subscription: it arrives once, live, and is not replayed as
// well. Each round subscribes to a fresh topic, publishes a retained
// message on it as soon as the SUBACK is read, then a plain one; a
// PINGREQ after them bounds the replay (the broker reads a connection's
// packets in order and replays before it reads the next), and the plain
// message bounds the live deliveries (they keep their order).
func TestRetainedPublishedAfterSubackArrivesOnce(t *testing.T) {
	f := newTestFleet(t, "pub", "sub")
	f.start(f.group(sub("s1", "pub", "r/#", "sub")))
	conn := f.rawConnect(t, "sub")
	defer conn.Close()
	publisher := f.mustConnect("pub")
	publish := func(topic, payload string, retain bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
		defer cancel()
		if _, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish %s %q: %v", topic, payload, err)
		}
	}
	write := func(p io.WriterTo) {
		t.Helper()
		if _, err := p.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 50 {
		topic := fmt.Sprintf("r/%d", round)
		s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
		s.PacketID = uint16(round + 1)
		s.Subscriptions = []packets.SubOptions{{Topic: topic, QoS: 0}}
		write(s)
		if p := readPacket(t, conn); p.Type != packets.SUBACK {
			t.Fatalf("round %d: %v, want SUBACK", round, p)
		}
		publish(topic, "retained", true)
		publish(topic, "plain", false)
		write(packets.NewControlPacket(packets.PINGREQ).Content.(*packets.Pingreq))
		retained, plain, pong := 0, false, false
		for !plain || !pong {
			p := readPacket(t, conn)
			switch p.Type {
			case packets.PINGRESP:
				pong = true
			case packets.PUBLISH:
				m := p.Content.(*packets.Publish)
				switch {
				case m.Topic != topic:
					t.Fatalf("round %d: message on %s, want %s", round, m.Topic, topic)
				case string(m.Payload) == "retained":
					retained++
				case string(m.Payload) == "plain":
					plain = true
				}
			default:
				t.Fatalf("round %d: unexpected %v", round, p)
			}
		}
		if retained != 1 {
			t.Fatalf("round %d: the retained message arrived %d times, want once", round, retained)
		}
	}
}

// readPacket reads the next packet from conn within testtool.Timeout.
func readPacket(t *testing.T, conn net.Conn) *packets.ControlPacket {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(testtool.Timeout))
	p, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return p
}
