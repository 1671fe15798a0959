package broker

import (
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// MQTT numbers each direction's packets on its own. A device holds a
// message from the broker unacknowledged (identifier N) while it sends
// its own packets numbered N: a SUBSCRIBE, then a QoS 1 PUBLISH. The
// SUBSCRIBE is granted, the PUBLISH acknowledged, and the broker's
// message is still the device's to acknowledge: after a reconnection it
// comes again, marked as a duplicate, under the same identifier; with a
// session store, after a restart too.
func TestClientPacketIDsIndependentOfTheBrokers(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) { testClientPacketIDs(t, restart) })
	}
}

func testClientPacketIDs(t *testing.T, restart bool) {
	f := newTestFleet(t, "pub", "dev")
	g := f.group(sub("s1", "pub", "t/#", "dev"), sub("s2", "dev", "d/#", "pub"))
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	b := f.mustStartPersistent(g, p)
	defer func() { b.Close() }()
	expiry := &packets.Properties{SessionExpiryInterval: new(uint32(60))}
	conn := f.rawConnectSession(t, f.broker.Addr().String(), "dev", true, expiry)
	write := func(p io.WriterTo) {
		t.Helper()
		if _, err := p.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
	subscribe := func(id uint16, filter string) {
		t.Helper()
		s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
		s.PacketID = id
		s.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: 1}}
		write(s)
		p := readPacket(t, conn)
		if p.Type != packets.SUBACK || p.Content.(*packets.Suback).Reasons[0] != 1 {
			t.Fatalf("SUBSCRIBE %s with packet ID %d: %v %+v, want SUBACK granting QoS 1", filter, id, p, p.Content)
		}
	}
	subscribe(1, "t/#")
	f.mustConnect("pub").publish(t, "t/x", "from the broker", false)
	first := readPacket(t, conn)
	if first.Type != packets.PUBLISH {
		t.Fatalf("%v, want PUBLISH", first)
	}
	n := first.Content.(*packets.Publish).PacketID

	subscribe(n, "t/other")
	own := packets.NewControlPacket(packets.PUBLISH).Content.(*packets.Publish)
	own.Topic, own.QoS, own.PacketID, own.Payload = "d/x", 1, n, []byte("from the device")
	write(own)
	if p := readPacket(t, conn); p.Type != packets.PUBACK || p.Content.(*packets.Puback).PacketID != n {
		t.Fatalf("%v %+v, want PUBACK %d", p, p.Content, n)
	}
	conn.Close()
	if restart {
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		b = f.mustStartPersistent(g, p)
	}

	conn = f.rawConnectSession(t, f.broker.Addr().String(), "dev", false, expiry)
	defer conn.Close()
	again := readPacket(t, conn)
	m, ok := again.Content.(*packets.Publish)
	if !ok || m.PacketID != n || !m.Duplicate || string(m.Payload) != "from the broker" {
		t.Fatalf("after reconnecting: %v %+v, want the unacknowledged message again (packet ID %d, DUP)", again, again.Content, n)
	}
}
