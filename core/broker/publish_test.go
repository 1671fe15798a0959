package broker

import (
	"context"
	"testing"

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
	off, _ := f.connectSession("offline", true)
	off.MustSubscribe(t, 1, "a/#")
	off.Disconnect()
	testtool.Eventually(t, "offline session disconnected", func() bool {
		cl, ok := f.broker.srv.Clients.Get("offline")
		return ok && cl.Closed()
	})

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
