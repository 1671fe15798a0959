package broker

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestPublishFollowsSubscriptionChanges checks that a topic's subscribers,
// which the broker remembers between publishes (publish.go), follow every
// SUBSCRIBE and UNSUBSCRIBE once it is acknowledged.
func TestPublishFollowsSubscriptionChanges(t *testing.T) {
	f := newTestFleet(t, "pub", "sub1", "sub2")
	f.start(f.group(sub("s1", "pub", "a/#", "sub1"), sub("s2", "pub", "a/#", "sub2")))
	pub, sub1, sub2 := f.mustConnect("pub"), f.mustConnect("sub1"), f.mustConnect("sub2")
	sub1.MustSubscribe(t, 1, "a/#")
	pub.publish(t, "a/x", "one", false)
	sub1.expect(t, "a/x", "one")

	sub2.MustSubscribe(t, 1, "a/+")
	pub.publish(t, "a/x", "two", false)
	sub1.expect(t, "a/x", "two")
	sub2.expect(t, "a/x", "two")

	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	if _, err := sub1.Paho.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"a/#"}}); err != nil {
		t.Fatalf("UNSUBSCRIBE: %v", err)
	}
	pub.publish(t, "a/x", "three", false)
	sub2.expect(t, "a/x", "three")
	// sub1 must not have "three": its next message is "four".
	sub1.MustSubscribe(t, 1, "a/x")
	pub.publish(t, "a/x", "four", false)
	sub1.expect(t, "a/x", "four")
	sub2.expect(t, "a/x", "four")
}

// TestPublishReachesConnectedAndOfflineSubscribersOnce publishes to a
// connected subscriber and to a persistent session that is not
// connected: each gets every message once, in order.
func TestPublishReachesConnectedAndOfflineSubscribersOnce(t *testing.T) {
	f := newTestFleet(t, "pub", "online", "offline")
	f.start(f.group(sub("s1", "pub", "a/#", "online"), sub("s2", "pub", "a/#", "offline")))
	pub, online := f.mustConnect("pub"), f.mustConnect("online")
	online.MustSubscribe(t, 1, "a/#")
	f.leaveSubscribed(t, "offline", "a/#")

	for _, p := range []string{"m1", "m2", "m3"} {
		pub.publish(t, "a/x", p, false)
	}
	online.expectOnly(t, "m1", "m2", "m3")
	back, present := f.connectSession("offline", false)
	if !present {
		t.Fatal("session not resumed")
	}
	back.expectOnly(t, "m1", "m2", "m3")
	pub.publish(t, "a/x", "marker", false)
	online.expectOnly(t, "marker")
	back.expectOnly(t, "marker")
}

// TestPublishBesideStoredSessions: while the store keeps sessions, a
// publish that reaches none of them is delivered by the direct path, and
// one that reaches them by mochi's (which stores it before the PUBACK).
// Every subscriber, stored or not, connected or not, gets each message
// once and in order, whichever path carried it.
func TestPublishBesideStoredSessions(t *testing.T) {
	f := newTestFleet(t, "pub", "plain", "keeper", "away")
	f.mustStartPersistent(f.group(
		sub("s1", "pub", "a/#", "plain"), sub("s2", "pub", "a/#", "keeper"), sub("s3", "pub", "a/#", "away"),
		sub("s4", "pub", "b/#", "plain")),
		Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")})
	pub, plain := f.mustConnect("pub"), f.mustConnect("plain")
	plain.MustSubscribe(t, 1, "a/#")
	plain.MustSubscribe(t, 1, "b/#")
	keeper, _ := f.connectSession("keeper", true)
	keeper.MustSubscribe(t, 1, "a/#")
	f.leaveSubscribed(t, "away", "a/#")

	pub.publish(t, "b/x", "b1", false) // reaches no stored session
	pub.publish(t, "a/x", "a1", false) // reaches two
	pub.publish(t, "b/x", "b2", false)
	pub.MustPublish(t, "a/x", "a2 at QoS 0", 0, false)
	pub.publish(t, "a/x", "a3", false)

	plain.expectOnly(t, "b1", "a1", "b2", "a2 at QoS 0", "a3")
	keeper.expectOnly(t, "a1", "a2 at QoS 0", "a3")
	back, present := f.connectSession("away", false)
	if !present {
		t.Fatal("away's session not resumed")
	}
	back.expectOnly(t, "a1", "a3")
	for _, c := range []*client{plain, keeper, back} {
		if m, ok := c.TryNext(200 * time.Millisecond); ok {
			t.Errorf("%s received %q once more", m.Topic, m.Payload)
		}
	}
}

// leaveSubscribed starts a persistent session for device name, subscribes
// it to filter at QoS 1 and disconnects it: the session stays, offline.
func (f *testFleet) leaveSubscribed(t *testing.T, name, filter string) {
	t.Helper()
	c, _ := f.connectSession(name, true)
	c.MustSubscribe(t, 1, filter)
	c.Disconnect()
	testtool.Eventually(t, name+"'s session disconnected", func() bool {
		cl, ok := f.broker.srv.Clients.Get(name)
		return ok && cl.Closed()
	})
}
