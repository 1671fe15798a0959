package e2e

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// Case 1: a flow in the table is delivered, over MQTT 5 and MQTT 3.1.1, at
// QoS 0 and 1.
func TestAllowedFlowDelivered(t *testing.T) {
	t.Parallel()
	// Every connection has its own device: the MQTT 3.1.1 clients do not
	// take over the sessions of the MQTT 5 ones.
	f := newFleet(t, "dev1", "dev2", "pub311q0", "pub311q1", "sub311")
	f.setRoutes(t, route{"dev1", "sensors/dev1/#", "dev2"},
		route{"pub311q0", "sensors/pub311q0/#", "sub311"}, route{"pub311q1", "sensors/pub311q1/#", "sub311"})
	startCore(t, f)

	t.Run("mqtt5", func(t *testing.T) {
		dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
		dev2.MustSubscribe(t, 1, "sensors/dev1/#")
		for _, qos := range []byte{0, 1} {
			payload := fmt.Sprintf("21.5C qos%d", qos)
			dev1.MustPublish(t, "sensors/dev1/temp", payload, qos, false)
			got := dev2.ReceiveUntil(t, payload)
			mqtttest.AssertPayloads(t, "dev2", got, payload)
			if m := got[0]; m.Topic != "sensors/dev1/temp" || m.QoS != qos {
				t.Errorf("dev2 received %v; want topic sensors/dev1/temp at QoS %d", m, qos)
			}
		}
	})

	t.Run("mqtt311", func(t *testing.T) {
		sub, codes := f.startMosqSub(t, "sub311", 1, "sensors/#")
		if !slices.Equal(codes, []int{1}) {
			t.Fatalf("mosquitto_sub sub311 sensors/#: SUBACK %v; want [1]", codes)
		}
		for _, qos := range []int{0, 1} {
			pub := fmt.Sprintf("pub311q%d", qos)
			topic := "sensors/" + pub + "/temp"
			payload := fmt.Sprintf("21.5C mqttv311 qos%d", qos)
			f.mustMosqPub(t, pub, topic, payload, qos)
			got := sub.ReceiveUntil(t, payload)
			mqtttest.AssertPayloads(t, sub.Name(), got, payload)
			if m := got[0]; m.Topic != topic || int(m.QoS) != qos {
				t.Errorf("%s received %v; want topic %s at QoS %d", sub.Name(), m, topic, qos)
			}
		}
	})
}

// Case 2: what the table does not route is not delivered, in the reverse
// direction of a route or outside its subject, whether the message is
// routed nowhere or routed to someone else.
func TestFlowNotInTableNotDelivered(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2", "dev3")
	f.setRoutes(t,
		route{"dev1", "sensors/dev1/#", "dev2"},
		route{"dev3", "sensors/#", "dev1"},      // lets dev1 subscribe, and is the control path
		route{"dev2", "sensors/dev1/#", "dev3"}, // dev2's sensors/dev1/... goes to dev3, not dev1
		route{"dev1", "sensors/dev2/#", "dev3"}, // dev1's sensors/dev2/... goes to dev3, not dev2
	)
	startCore(t, f)
	dev1, dev2, dev3 := f.connect5(t, "dev1"), f.connect5(t, "dev2"), f.connect5(t, "dev3")
	dev3.MustSubscribe(t, 1, "#") // witness: what is routed elsewhere does arrive there

	t.Run("reverse direction", func(t *testing.T) {
		dev1.MustSubscribe(t, 1, "sensors/#")
		// dev1→dev2 exists; dev2→dev1 does not.
		dev2.Publish(t, "sensors/dev1/temp", "reverse, routed to dev3", 1, false)
		dev2.Publish(t, "sensors/dev2/temp", "reverse, routed nowhere", 1, false)
		dev3.MustPublish(t, "sensors/dev3/temp", "control-reverse", 1, false)
		mqtttest.AssertPayloads(t, "dev1", dev1.ReceiveUntil(t, "control-reverse"), "control-reverse")
		mqtttest.AssertPayloads(t, "dev3", dev3.ReceiveUntil(t, "reverse, routed to dev3"), "reverse, routed to dev3")
	})

	t.Run("outside the subject", func(t *testing.T) {
		dev2.MustSubscribe(t, 1, "#")
		dev1.Publish(t, "sensors/dev2/temp", "outside, routed to dev3", 1, false)
		dev1.Publish(t, "sensors", "outside, routed nowhere", 1, false)
		dev1.Publish(t, "other/dev1/temp", "outside, routed nowhere, QoS 0", 0, false)
		dev1.MustPublish(t, "sensors/dev1/temp", "control-subject", 1, false)
		mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "control-subject"), "control-subject")
		mqtttest.AssertPayloads(t, "dev3", dev3.ReceiveUntil(t, "outside, routed to dev3"), "outside, routed to dev3")
	})
}

// Case 8: a device subscribed to # receives only what the table sends it.
func TestWildcardSubscriberGetsOnlyRouted(t *testing.T) {
	t.Parallel()
	// dev2 and dev4 (its MQTT 3.1.1 twin) have the same routes.
	f := newFleet(t, "dev1", "dev2", "dev3", "dev4")
	f.setRoutes(t,
		route{"dev1", "a/#", "dev2"},
		route{"dev1", "a/#", "dev4"},
		route{"dev3", "a/#", "dev1"}, // dev3's a/x is routed, but to dev1
		route{"dev1", "b/#", "dev3"}, // dev1's b/x is routed, but to dev3
	)
	startCore(t, f)
	dev1, dev3 := f.connect5(t, "dev1"), f.connect5(t, "dev3")

	send := func(t *testing.T, control string) {
		dev3.Publish(t, "a/x", "dev3 on a, routed to dev1", 1, false)
		dev3.Publish(t, "c/x", "dev3 on c, routed nowhere", 1, false)
		dev1.Publish(t, "b/x", "dev1 on b, routed to dev3", 1, false)
		dev1.Publish(t, "c/x", "dev1 on c, routed nowhere", 1, false)
		dev1.MustPublish(t, "a/x", control, 1, false)
	}

	t.Run("mqtt5", func(t *testing.T) {
		dev2 := f.connect5(t, "dev2")
		dev2.MustSubscribe(t, 1, "#")
		send(t, "control-5")
		got := dev2.ReceiveUntil(t, "control-5")
		mqtttest.AssertPayloads(t, "dev2", got, "control-5")
		dev2.Disconnect()
	})

	t.Run("mqtt311", func(t *testing.T) {
		sub, codes := f.startMosqSub(t, "dev4", 1, "#")
		if !slices.Equal(codes, []int{1}) {
			t.Fatalf("mosquitto_sub dev4 #: SUBACK %v; want [1]", codes)
		}
		send(t, "control-311")
		mqtttest.AssertPayloads(t, sub.Name(), sub.ReceiveUntil(t, "control-311"), "control-311")
	})
}

// Case 9: a retained message is replayed only where the table allows its
// publisher to reach the subscriber.
func TestRetainedNotReplayedAgainstTable(t *testing.T) {
	t.Parallel()
	// dev4 is dev3's MQTT 3.1.1 twin.
	f := newFleet(t, "dev1", "dev2", "dev3", "dev4")
	f.setRoutes(t,
		route{"dev1", "a/#", "dev2"},
		route{"dev2", "a/#", "dev3"}, // dev3 may subscribe to a/#, but not receive dev1's messages
		route{"dev2", "a/#", "dev4"},
	)
	startCore(t, f)
	dev1 := f.connect5(t, "dev1")
	dev1.MustPublish(t, "a/x", "retained by dev1", 1, true)

	dev3 := f.connect5(t, "dev3")
	dev3.MustSubscribe(t, 1, "a/#")
	dev2 := f.connect5(t, "dev2")
	dev2.MustPublish(t, "a/y", "control from dev2", 1, false)
	mqtttest.AssertPayloads(t, "dev3", dev3.ReceiveUntil(t, "control from dev2"), "control from dev2")

	dev2.MustSubscribe(t, 1, "a/#")
	got := dev2.ReceiveUntil(t, "retained by dev1")
	mqtttest.AssertPayloads(t, "dev2", got, "retained by dev1")
	if m := got[0]; m.Topic != "a/x" || !m.Retain {
		t.Errorf("dev2 received %v; want the retained message on a/x with the retain flag", m)
	}

	t.Run("mqtt311", func(t *testing.T) {
		// A fresh MQTT 3.1.1 subscriber like dev3 gets no replay either.
		sub, codes := f.startMosqSub(t, "dev4", 1, "a/#")
		if !slices.Equal(codes, []int{1}) {
			t.Fatalf("mosquitto_sub dev4 a/#: SUBACK %v; want [1]", codes)
		}
		dev2.MustPublish(t, "a/y", "control 311", 1, false)
		mqtttest.AssertPayloads(t, sub.Name(), sub.ReceiveUntil(t, "control 311"), "control 311")
	})
}

// Case 10: a SUBSCRIBE that nothing in the table targeting the device can
// match is refused: SUBACK 0x87 (MQTT 5), 0x80 (MQTT 3.1.1).
func TestSubscribeRefusedOutsideTable(t *testing.T) {
	t.Parallel()
	// dev3 and dev4 are the MQTT 3.1.1 twins of dev1 and dev2.
	f := newFleet(t, "dev1", "dev2", "dev3", "dev4")
	f.setRoutes(t, route{"dev1", "a/#", "dev2"}, route{"dev1", "a/#", "dev4"})
	startCore(t, f)

	cases := []struct {
		dev, filter string
		granted     bool
	}{
		{"dev1", "a/#", false}, // nothing targets dev1
		{"dev1", "#", false},
		{"dev2", "b/#", false},
		{"dev2", "ab/x", false},
		{"dev2", "$SYS/#", false},
		{"dev2", "a/#", true},
		{"dev2", "a/x/y", true},
		{"dev2", "+/x", true}, // intersects a/#
		{"dev2", "#", true},
	}

	t.Run("mqtt5", func(t *testing.T) {
		clients := map[string]*mqtttest.Client{"dev1": f.connect5(t, "dev1"), "dev2": f.connect5(t, "dev2")}
		for _, c := range cases {
			code := clients[c.dev].Subscribe(t, 1, c.filter)[0]
			switch {
			case c.granted && code >= 0x80:
				t.Errorf("%s SUBSCRIBE %s: SUBACK 0x%02x; want granted", c.dev, c.filter, code)
			case !c.granted && code != 0x87:
				t.Errorf("%s SUBSCRIBE %s: SUBACK 0x%02x; want 0x87 (not authorized)", c.dev, c.filter, code)
			}
		}
	})

	t.Run("mqtt311", func(t *testing.T) {
		// One SUBSCRIBE a device, with every filter: the SUBACK has a
		// return code for each.
		twin := map[string]string{"dev1": "dev3", "dev2": "dev4"}
		filters, want := map[string][]string{}, map[string][]int{}
		for _, c := range cases {
			if c.filter == "#" || strings.HasPrefix(c.filter, "$") || c.filter == "a/x/y" {
				continue // covered above; keeps the run short
			}
			dev := twin[c.dev]
			filters[dev] = append(filters[dev], c.filter)
			code := 0x80
			if c.granted {
				code = 1
			}
			want[dev] = append(want[dev], code)
		}
		for dev, fs := range filters {
			sub, codes := f.startMosqSub(t, dev, 1, fs...)
			sub.stop()
			if !slices.Equal(codes, want[dev]) {
				t.Errorf("mosquitto_sub %s %q: SUBACK %v; want %v", dev, fs, codes, want[dev])
			}
		}
	})
}

// Case 13: will messages and shared subscriptions cannot bypass the table.
func TestWillAndSharedSubscriptionsFollowTable(t *testing.T) {
	t.Parallel()
	// Each subtest has its own devices, in the same roles: X1 → X2 on
	// a/#, and X3 → X1 on a/# (X3's messages are routed, but never to X2).
	// The will subtest adds w4, a fresh subscriber like w2, and w5, its
	// control publisher.
	f := newFleet(t, "w1", "w2", "w3", "w4", "w5", "s1", "s2", "s3", "m1", "m2", "m3")
	var routes []route
	for _, x := range []string{"w", "s", "m"} {
		routes = append(routes, route{x + "1", "a/#", x + "2"}, route{x + "3", "a/#", x + "1"})
	}
	f.setRoutes(t, append(routes, route{"w5", "a/#", "w4"})...)
	startCore(t, f)

	t.Run("will", func(t *testing.T) {
		w2 := f.connect5(t, "w2")
		w2.MustSubscribe(t, 1, "a/#")
		// w1, with a will routed to w2, is also the witness of w3's will,
		// routed to w1 only.
		w1, ca, err := f.dial5(t, f.identity("w1").tlsCertificate(t), "w1",
			&paho.WillMessage{Topic: "a/will", Payload: []byte("will of w1"), QoS: 1})
		if err != nil {
			t.Fatalf("w1 connect with will: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
		}
		w1.MustSubscribe(t, 1, "a/#")
		w3, ca, err := f.dial5(t, f.identity("w3").tlsCertificate(t), "w3",
			&paho.WillMessage{Topic: "a/will", Payload: []byte("will of w3"), QoS: 1, Retain: true})
		if err != nil {
			t.Fatalf("w3 connect with will: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
		}
		w3.Drop() // drop TCP, no DISCONNECT: the will is due
		// Once w1 has w3's will, the core has routed it: had it gone to
		// w2 too, it would be in w2's queue before w1's will.
		w1.Expect(t, "a/will", "will of w3")
		w1.Drop()
		mqtttest.AssertPayloads(t, "w2", w2.ReceiveUntil(t, "will of w1"), "will of w1")

		// w3's will was not retained for a subscriber like w2 either.
		w4 := f.connect5(t, "w4")
		w4.MustSubscribe(t, 1, "a/#")
		f.connect5(t, "w5").MustPublish(t, "a/x", "control after will", 1, false)
		mqtttest.AssertPayloads(t, "w4", w4.ReceiveUntil(t, "control after will"), "control after will")
	})

	t.Run("shared subscription mqtt5", func(t *testing.T) {
		s1, s2, s3 := f.connect5(t, "s1"), f.connect5(t, "s2"), f.connect5(t, "s3")
		s2.MustSubscribe(t, 1, "a/#") // the control path
		sa, err := s2.Paho.Subscribe(t.Context(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$share/g/a/#", QoS: 1}}})
		switch {
		case errors.Is(err, paho.ErrInvalidArguments):
			t.Logf("the core does not offer shared subscriptions (CONNACK): %v", err)
		case sa == nil:
			t.Fatalf("s2 SUBSCRIBE $share/g/a/#: %v", err)
		case sa.Reasons[0] >= 0x80:
			t.Logf("s2 SUBSCRIBE $share/g/a/#: refused with SUBACK 0x%02x", sa.Reasons[0])
		}
		s3.Publish(t, "a/x", "shared forbidden", 1, false)
		s1.MustPublish(t, "a/x", "shared control", 1, false)
		for _, m := range s2.ReceiveUntil(t, "shared control") {
			if m.Payload != "shared control" {
				t.Errorf("s2 received %v; only s1's messages are routed to it", m)
			}
		}
	})

	t.Run("shared subscription mqtt311", func(t *testing.T) {
		m1, m3 := f.connect5(t, "m1"), f.connect5(t, "m3")
		sub, codes := f.startMosqSub(t, "m2", 1, "a/#", "$share/g/a/#")
		if len(codes) != 2 || codes[0] != 1 {
			t.Fatalf("mosquitto_sub m2 a/# $share/g/a/#: SUBACK %v; want a/# granted at QoS 1", codes)
		}
		t.Logf("SUBACK for $share/g/a/#: %d", codes[1])
		m3.Publish(t, "a/x", "shared forbidden 311", 1, false)
		m1.MustPublish(t, "a/x", "shared control 311", 1, false)
		for _, m := range sub.ReceiveUntil(t, "shared control 311") {
			if m.Payload != "shared control 311" {
				t.Errorf("%s received %v; only m1's messages are routed to it", sub.Name(), m)
			}
		}
	})
}
