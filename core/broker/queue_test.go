package broker

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stalledSubscriber connects name over a raw TLS connection, subscribes
// to filter at qos and then never reads again.
func (f *testFleet) stalledSubscriber(name, filter string, qos byte) {
	f.t.Helper()
	conn := f.rawConnect(f.t, name)
	f.t.Cleanup(func() { conn.Close() })
	s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: qos}}
	if _, err := s.WriteTo(conn); err != nil {
		f.t.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.SUBACK {
		f.t.Fatalf("suback: %v %v", p, err)
	}
}

// The shape: a publisher sends everything, waiting for each
// acknowledgement, before its subscriber reads anything (the subscriber
// holds its acknowledgements meanwhile). The broker queues the lot.
func TestHeldAcknowledgementsDoNotStallThePublisher(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) {
			const n = 10000
			f := newTestFleet(t, "pub", "sub")
			f.start(f.group(sub("s1", "pub", "held/#", "sub")))
			release := make(chan struct{})
			var got, outOfOrder atomic.Int64
			subscriber := f.mustConnect("sub")
			subscriber.Discard() // the test counts what arrives itself
			subscriber.Paho.AddOnPublishReceived(func(r paho.PublishReceived) (bool, error) {
				<-release
				var i int64
				fmt.Sscan(string(r.Packet.Payload), &i)
				if i != got.Load() {
					outOfOrder.Add(1)
				}
				got.Add(1)
				return true, nil
			})
			subscriber.MustSubscribe(t, qos, "held/#")
			publisher := f.mustConnect("pub")
			start := time.Now()
			for i := 0; i < n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: "held/x", QoS: qos, Payload: []byte(fmt.Sprint(i))})
				cancel()
				if err != nil {
					t.Fatalf("publish %d: %v (after %v)", i, err, time.Since(start))
				}
			}
			close(release)
			waitFor(t, 60*time.Second, "every message", func() bool { return got.Load() == n })
			if s := f.broker.Stats(); s.Dropped != 0 || outOfOrder.Load() != 0 {
				t.Fatalf("dropped %d, out of order %d; stats %+v", s.Dropped, outOfOrder.Load(), s)
			}
		})
	}
}

// A subscriber that never reads fills its own queue only: the broker
// drops what does not fit, counts it for that subscriber, and keeps
// delivering to everyone else.
func TestStalledSubscriberLosesOnlyItsOwnMessages(t *testing.T) {
	f := newTestFleet(t, "pub", "live", "stalled")
	f.limits = Limits{QueueMessages: 200}
	f.start(f.group(sub("s1", "pub", "t/#", "live"), sub("s2", "pub", "t/#", "stalled")))
	f.stalledSubscriber("stalled", "t/#", 1)
	const n = 3000
	var got atomic.Int64
	received := make(chan struct{}, n)
	live := f.mustConnect("live")
	live.Discard() // the test counts what arrives itself
	live.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) {
		got.Add(1)
		received <- struct{}{}
		return true, nil
	})
	live.subscribe(t, "t/#")
	publisher := f.mustConnect("pub")
	payload := make([]byte, 1024)
	// The live subscriber shares the queue bound, so the publisher stays at
	// most ahead messages ahead of it: on a loaded machine a faster
	// publisher would fill the live queue too, and those drops would be
	// right. The stalled subscriber never reads; if it held anything up,
	// the live one would stop receiving and the publisher would wait here.
	const ahead = 100
	for i := 0; i < n; i++ {
		if i >= ahead {
			select {
			case <-received:
			case <-time.After(testtool.Timeout):
				t.Fatalf("the live subscriber received %d of the first %d messages (dropped %d)", got.Load(), i, f.broker.ClientDropped("live"))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: "t/x", QoS: 1, Payload: payload})
		cancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	waitFor(t, 30*time.Second, "the live subscriber's messages", func() bool {
		if d := f.broker.ClientDropped("live"); d != 0 {
			t.Fatalf("the live subscriber lost %d messages (received %d of %d)", d, got.Load(), n)
		}
		return got.Load() == n
	})
	// The stalled one holds its window (512), its queue (200) and what its
	// socket buffers took; every other message was dropped and counted.
	waitFor(t, 10*time.Second, "drops counted", func() bool { return f.broker.ClientDropped("stalled") > 0 })
	if d, live := f.broker.ClientDropped("stalled"), f.broker.ClientDropped("live"); d >= n || live != 0 {
		t.Fatalf("dropped for the stalled subscriber %d, for the live one %d", d, live)
	}
	if s := f.broker.Stats(); s.QueuedBytes > int64(200*(1024+entryOverhead+16)) {
		t.Fatalf("queued %d bytes, more than the queue bound", s.QueuedBytes)
	}
}

// A queued message reaches an MQTT 5 subscriber as mochi's own delivery
// would build it: its subscription identifier, the retain flag kept for
// Retain As Published, the remaining message expiry, the response topic
// and correlation data of a request, and a topic alias (the topic itself
// only the first time).
func TestQueuedDeliveryKeepsMQTT5Properties(t *testing.T) {
	f := newTestFleet(t, "pub", "sub")
	f.start(f.group(sub("s1", "pub", "t/#", "sub")))
	conn := f.rawConnectWith(t, "sub", &packets.Properties{TopicAliasMaximum: new(uint16(5))})
	defer conn.Close()
	s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
	s.PacketID = 1
	s.Properties = &packets.Properties{SubscriptionIdentifier: new(7)}
	s.Subscriptions = []packets.SubOptions{{Topic: "t/#", QoS: 1, RetainAsPublished: true}}
	if _, err := s.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.SUBACK {
		t.Fatalf("suback: %v %v", p, err)
	}
	publisher := f.mustConnect("pub")
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
		_, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: "t/x", QoS: 1, Retain: i == 0, Payload: []byte{byte(i)},
			Properties: &paho.PublishProperties{MessageExpiry: new(uint32(60)), ResponseTopic: "reply/pub", CorrelationData: []byte{byte(i), 7}}})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	var alias uint16
	for i := range 2 {
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		cp, err := packets.ReadPacket(conn)
		if err != nil || cp.Type != packets.PUBLISH {
			t.Fatalf("message %d: %v %v", i, cp, err)
		}
		p := cp.Content.(*packets.Publish)
		pr := p.Properties
		if pr == nil || pr.SubscriptionIdentifier == nil || *pr.SubscriptionIdentifier != 7 || pr.TopicAlias == nil ||
			pr.MessageExpiry == nil || *pr.MessageExpiry > 60 || *pr.MessageExpiry < 50 || p.Retain != (i == 0) || p.QoS != 1 ||
			pr.ResponseTopic != "reply/pub" || string(pr.CorrelationData) != string([]byte{byte(i), 7}) {
			t.Fatalf("message %d: %+v properties %+v", i, p, pr)
		}
		if want := map[int]string{0: "t/x", 1: ""}[i]; p.Topic != want {
			t.Fatalf("message %d: topic %q, want %q (alias %d)", i, p.Topic, want, *pr.TopicAlias)
		}
		if i == 1 && *pr.TopicAlias != alias {
			t.Fatalf("alias %d, then %d", alias, *pr.TopicAlias)
		}
		alias = *pr.TopicAlias
		ack := packets.NewControlPacket(packets.PUBACK).Content.(*packets.Puback)
		ack.PacketID = p.PacketID
		if _, err := ack.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
}

// A connection with a clean start begins a session without
// subscriptions: nothing published for the session it replaces reaches
// it, however close to the CONNECT it arrives. A publisher keeps sending
// on t/x while, round after round, the subscriber connects with a
// persistent session subscribed to t/#, then again with a clean start.
// Each new session subscribes to a marker topic only, and everything
// queued for it before that arrives before the marker.
func TestCleanStartGetsNothingOfTheOldSession(t *testing.T) {
	f := newTestFleet(t, "pub", "sub")
	f.start(f.group(sub("s1", "pub", "t/#", "sub"), sub("s2", "pub", "marker/#", "sub")))
	subscribe := func(conn net.Conn, filter string) {
		t.Helper()
		s := packets.NewControlPacket(packets.SUBSCRIBE).Content.(*packets.Subscribe)
		s.PacketID = 1
		s.Subscriptions = []packets.SubOptions{{Topic: filter, QoS: 1}}
		if _, err := s.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
	publisher := f.mustConnect("pub")
	publish := func(topic string) error {
		ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
		defer cancel()
		_, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: []byte(topic)})
		return err
	}
	stop := make(chan struct{})
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if publish("t/x") != nil {
				return
			}
		}
	}()
	defer func() { close(stop); <-flooding }()
	for round := range 20 {
		old := f.rawConnectWith(t, "sub", &packets.Properties{SessionExpiryInterval: new(uint32(60))})
		subscribe(old, "t/#")
		for p := readPacket(t, old); p.Type != packets.SUBACK; p = readPacket(t, old) {
			if p.Type != packets.PUBLISH { // MQTT lets messages come before the SUBACK
				t.Fatalf("round %d: %v, want SUBACK", round, p)
			}
		}
		conn := f.rawConnect(t, "sub") // a clean start, taking the session over
		old.Close()
		subscribe(conn, "marker/#")
		marker := fmt.Sprintf("marker/%d", round)
		for got := false; !got; {
			p := readPacket(t, conn)
			switch {
			case p.Type == packets.SUBACK:
				if err := publish(marker); err != nil {
					t.Fatal(err)
				}
			case p.Type == packets.PUBLISH && p.Content.(*packets.Publish).Topic == marker:
				got = true
			case p.Type == packets.PUBLISH:
				t.Fatalf("round %d: the clean session received a message on %s", round, p.Content.(*packets.Publish).Topic)
			default:
				t.Fatalf("round %d: unexpected %v", round, p)
			}
		}
		conn.Close()
	}
}

// A persistent session that is not connected keeps its QoS 1 messages in
// its queue, far past the 512 a session's inflight messages hold, and
// gets them all, in order, when it comes back; QoS 0 messages are not
// kept for it. With a store, they also survive a restart.
func TestOfflineSessionKeepsItsQoS1Messages(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			const n = 2000
			f := newTestFleet(t, "pub", "dev")
			g := f.group(sub("s1", "pub", "a/#", "dev"))
			p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
			b := f.mustStartPersistent(g, p)
			f.leaveSubscribed(t, "dev", "a/#")
			publisher := f.mustConnect("pub")
			var want []string
			for i := range n {
				qos := byte(1)
				if i%100 == 0 {
					qos = 0
				}
				payload := fmt.Sprintf("qos%d-%d", qos, i)
				if qos == 1 {
					want = append(want, payload)
				}
				ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
				_, err := publisher.Paho.Publish(ctx, &paho.Publish{Topic: "a/x", QoS: qos, Payload: []byte(payload)})
				cancel()
				if err != nil {
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			publisher.Disconnect()
			if restart {
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				b = f.mustStartPersistent(g, p)
			}
			defer b.Close()
			dev, present := f.connectSession("dev", false)
			if !present {
				t.Fatal("CONNACK session present = false; want the kept session")
			}
			dev.expectOnly(t, want...)
			publisher = f.mustConnect("pub")
			publisher.publish(t, "a/x", "live", false)
			dev.expectOnly(t, "live")
			if s := b.Stats(); s.Dropped != 0 {
				t.Errorf("dropped %d messages", s.Dropped)
			}
		})
	}
}
