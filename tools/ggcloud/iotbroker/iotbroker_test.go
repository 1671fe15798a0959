package iotbroker

import (
	"bytes"
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

func TestNewChecksOptions(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	noClientCert := e.serverTLS()
	noClientCert.ClientAuth = 0
	for _, o := range []Options{
		{TLS: e.serverTLS(), Store: e.st},
		{Listener: ln, Store: e.st},
		{Listener: ln, TLS: e.serverTLS()},
		{Listener: ln, TLS: noClientCert, Store: e.st},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}
}

// TestAllowedFlows is the cloud bridge's traffic: a core publishes
// device messages upstream at QoS 1 and receives what the cloud sends it;
// a cloud-side client does the opposite; MQTT 5 and 3.1.1 alike.
func TestAllowedFlows(t *testing.T) {
	e := newEnv(t)
	gw := e.thing("gw", strings.Join([]string{connectSelf,
		allow("iot:Publish", "topic/sensors/*"),
		allow("iot:Subscribe", "topicfilter/commands/${iot:Connection.Thing.ThingName}"),
		allow("iot:Receive", "topic/commands/${iot:Connection.Thing.ThingName}")}, ","))
	cloud := e.thing("cloud", strings.Join([]string{connectSelf,
		allow("iot:Subscribe", "topicfilter/sensors/#"),
		allow("iot:Receive", "topic/sensors/*"),
		allow("iot:Publish", "topic/commands/*")}, ","))
	legacy := e.thing("legacy", strings.Join([]string{connectSelf, allow("iot:Publish", "topic/sensors/*")}, ","))
	e.start(0)

	g, c := e.mustConnect5(gw), e.mustConnect5(cloud)
	if codes := c.Subscribe(t, 1, "sensors/#"); string(codes) != "\x01" {
		t.Fatalf("cloud SUBACK %x; want 01", codes)
	}
	if codes := g.Subscribe(t, 1, "commands/gw"); string(codes) != "\x01" {
		t.Fatalf("gw SUBACK %x; want 01", codes)
	}
	if rc := g.Publish(t, "sensors/gw/temp", "21", 1, false); rc != 0 {
		t.Fatalf("gw PUBACK %#x; want 0", rc)
	}
	if m := c.Expect(t, "sensors/gw/temp", "21"); m.QoS != 1 {
		t.Errorf("delivered at QoS %d; want 1", m.QoS)
	}
	if rc := c.Publish(t, "commands/gw", "on", 1, false); rc != 0 {
		t.Fatalf("cloud PUBACK %#x; want 0", rc)
	}
	g.Expect(t, "commands/gw", "on")

	l, rc := e.connect3(legacy, "legacy")
	if rc != 0 {
		t.Fatalf("MQTT 3.1.1 CONNACK %#x; want 0", rc)
	}
	l.publish("sensors/legacy", 1, "v3", 7)
	if ack, err := l.read(); err != nil || ack.FixedHeader.Type != packets.Puback || ack.PacketID != 7 {
		t.Fatalf("MQTT 3.1.1 publish: got %+v, %v; want PUBACK 7", ack.FixedHeader, err)
	}
	c.Expect(t, "sensors/legacy", "v3")
	if strings.Contains(e.logs.String(), "refused") {
		t.Errorf("refusals logged:\n%s", e.logs)
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t)
	gw := e.thing("gw", strings.Join([]string{connectSelf, allow("iot:Publish", "topic/status/gw")}, ","))
	stranger := e.issue("stranger", time.Now().Add(time.Hour))
	// A registered certificate that has expired.
	e.thing("old", allow("iot:*", "*"))
	expired := e.issue("old-expired", time.Now().Add(-time.Minute))
	if err := e.st.RegisterCertificate(store.Certificate{ID: expired.id, Thing: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AttachPolicy("old", expired.id); err != nil {
		t.Fatal(err)
	}
	e.start(0)

	will := func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: "status/other", Payload: []byte("gone"), QoS: 1}
	}
	tests := []struct {
		name     string
		id       identity
		clientID string
		will     bool
		log      []string
	}{
		{"unregistered certificate", stranger, "stranger", false,
			[]string{"action=iot:Connect", "resource=" + arn + "client/stranger", "certificate " + stranger.id + " is not registered"}},
		{"client ID not allowed", gw, "other", false,
			[]string{"action=iot:Connect", "resource=" + arn + "client/other", `reason="no policy allows iot:Connect`}},
		{"will topic not allowed", gw, "gw", true,
			[]string{"action=iot:Publish", "resource=" + arn + "topic/status/other", "will message"}},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/MQTT 5", func(t *testing.T) {
			var opts []func(*paho.Connect)
			if tt.will {
				opts = append(opts, will)
			}
			_, ack, err := e.connect5(tt.id, tt.clientID, opts...)
			if err == nil || ack == nil || ack.ReasonCode != 0x87 {
				t.Fatalf("connect: CONNACK %+v, %v; want reason code 0x87", ack, err)
			}
			e.waitLog(t, tt.log...)
		})
		t.Run(tt.name+"/MQTT 3.1.1", func(t *testing.T) {
			var opts []func(*packets.ConnectParams)
			if tt.will {
				opts = append(opts, func(c *packets.ConnectParams) {
					c.WillFlag, c.WillTopic, c.WillPayload, c.WillQos = true, "status/other", []byte("gone"), 1
				})
			}
			c, rc := e.connect3(tt.id, tt.clientID, opts...)
			if rc != 0x05 {
				t.Fatalf("CONNACK return code %#x; want 0x05 (not authorized)", rc)
			}
			if closed, _ := c.closed(); !closed {
				t.Error("connection left open")
			}
		})
	}
	t.Run("expired certificate", func(t *testing.T) {
		if _, _, err := e.connect5(expired, "old"); err == nil {
			t.Fatal("connected")
		}
		e.waitLog(t, "tls handshake refused", "outside its validity")
	})
	t.Run("client ID of the broker's sentinel", func(t *testing.T) {
		if _, _, err := e.connect5(gw, sentinelClient); err == nil {
			t.Fatal("connected")
		}
	})
	// The refused will topic was the only problem: without it gw connects.
	e.mustConnect5(gw)
}

func TestPublishRefused(t *testing.T) {
	e := newEnv(t)
	policy := strings.Join([]string{connectSelf, allow("iot:Publish", "topic/ok/*")}, ",")
	// One thing for each connection: the MQTT 3.1.1 ones are closed by the
	// broker, and a client ID that connects again could meet its old
	// session still being torn down.
	pub, pub3q0, pub3q1 := e.thing("pub", policy), e.thing("pub3q0", policy), e.thing("pub3q1", policy)
	sub := e.thing("sub", strings.Join([]string{connectSelf, allow("iot:Subscribe iot:Receive", "*")}, ","))
	e.start(0)
	s := e.mustConnect5(sub)
	s.Subscribe(t, 1, "#")

	t.Run("MQTT 5", func(t *testing.T) {
		p := e.mustConnect5(pub)
		if rc := p.Publish(t, "secret/1", "x", 1, false); rc != 0x87 {
			t.Errorf("QoS 1 PUBACK %#x; want 0x87", rc)
		}
		e.waitLog(t, "client=pub", "action=iot:Publish", "resource="+arn+"topic/secret/1", "no policy allows")
		p.Publish(t, "secret/0", "x", 0, false)
		// The connection stays: the next allowed message goes through,
		// and nothing refused arrived before it.
		if rc := p.Publish(t, "ok/1", "y", 1, false); rc != 0 {
			t.Errorf("allowed QoS 1 PUBACK %#x; want 0", rc)
		}
		s.Expect(t, "ok/1", "y")
		e.waitLog(t, "client=pub", "action=iot:Publish", "resource="+arn+"topic/secret/0")
	})
	for qos, id := range []identity{pub3q0, pub3q1} {
		t.Run("MQTT 3.1.1 QoS "+string(rune('0'+qos)), func(t *testing.T) {
			c, rc := e.connect3(id, id.name)
			if rc != 0 {
				t.Fatalf("CONNACK %#x", rc)
			}
			c.publish("secret/3", byte(qos), "x", uint16(qos))
			if closed, got := c.closed(); !closed || len(got) > 0 {
				t.Errorf("after a refused publish: closed %v, packets %+v; want closed, none", closed, got)
			}
			e.waitLog(t, "client="+id.name, "action=iot:Publish", "resource="+arn+"topic/secret/3")
		})
	}
	s.ExpectNothing(t, 200*time.Millisecond)
}

func TestSubscribeRefused(t *testing.T) {
	e := newEnv(t)
	policy := strings.Join([]string{connectSelf, allow("iot:Subscribe", "topicfilter/ok/#"), allow("iot:Receive iot:Publish", "*")}, ",")
	th, th3 := e.thing("th", policy), e.thing("th3", policy) // th3: the MQTT 3.1.1 client
	e.start(0)
	c := e.mustConnect5(th)
	if codes := c.Subscribe(t, 1, "ok/#", "secret/#"); string(codes) != "\x01\x87" {
		t.Errorf("MQTT 5 SUBACK %x; want 01 87", codes)
	}
	e.waitLog(t, "client=th", "action=iot:Subscribe", "resource="+arn+"topicfilter/secret/#")
	// Not subscribed: a message on the refused filter is not delivered.
	c.Publish(t, "secret/1", "x", 1, false)
	c.Publish(t, "ok/1", "y", 1, false)
	c.Expect(t, "ok/1", "y")
	c.Disconnect()

	c3, rc := e.connect3(th3, "th3")
	if rc != 0 {
		t.Fatalf("CONNACK %#x", rc)
	}
	if codes := c3.subscribe(1, "ok/#", "secret/+"); string(codes) != "\x01\x80" {
		t.Errorf("MQTT 3.1.1 SUBACK %x; want 01 80", codes)
	}
	e.waitLog(t, "client=th3", "action=iot:Subscribe", "resource="+arn+"topicfilter/secret/+")
}

func TestReceiveRefused(t *testing.T) {
	e := newEnv(t)
	sub := e.thing("sub", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*"), allow("iot:Receive", "topic/a/*")}, ","))
	pub := e.thing("pub", strings.Join([]string{connectSelf, allow("iot:Publish", "*")}, ","))
	e.start(0)
	s, p := e.mustConnect5(sub), e.mustConnect5(pub)
	if codes := s.Subscribe(t, 1, "#"); string(codes) != "\x01" {
		t.Fatalf("SUBACK %x", codes)
	}
	p.Publish(t, "b/1", "no", 1, false)
	p.Publish(t, "a/1", "yes", 1, false)
	// Messages of one publisher arrive in order: b/1 would come first.
	if m := s.Next(t); m.Topic != "a/1" {
		t.Errorf("first message %s %q; want a/1", m.Topic, m.Payload)
	}
	e.waitLog(t, "client=sub", "action=iot:Receive", "resource="+arn+"topic/b/1")
}

func TestDenyWins(t *testing.T) {
	e := newEnv(t)
	th := e.thing("th", strings.Join([]string{
		allow("iot:*", "*"),
		deny("iot:Publish", "topic/secret/*"),
		deny("iot:Receive", "topic/private/*"),
		deny("iot:Subscribe", "topicfilter/private/#"),
		deny("iot:Connect", "client/admin"),
	}, ","))
	e.start(0)
	if _, ack, err := e.connect5(th, "admin"); err == nil || ack.ReasonCode != 0x87 {
		t.Errorf("connect as admin: %+v, %v; want 0x87", ack, err)
	}
	c := e.mustConnect5(th)
	if codes := c.Subscribe(t, 1, "#", "private/#"); string(codes) != "\x01\x87" {
		t.Errorf("SUBACK %x; want 01 87", codes)
	}
	if rc := c.Publish(t, "secret/1", "x", 1, false); rc != 0x87 {
		t.Errorf("PUBACK %#x; want 0x87", rc)
	}
	c.Publish(t, "private/1", "x", 1, false)
	c.Publish(t, "public/1", "y", 1, false)
	if m := c.Next(t); m.Topic != "public/1" {
		t.Errorf("first message %s; want public/1", m.Topic)
	}
	for _, want := range [][]string{
		{"action=iot:Connect", "resource=" + arn + "client/admin", "denies"},
		{"action=iot:Publish", "resource=" + arn + "topic/secret/1", "denies"},
		{"action=iot:Subscribe", "resource=" + arn + "topicfilter/private/#", "denies"},
		{"action=iot:Receive", "resource=" + arn + "topic/private/1", "denies"},
	} {
		e.waitLog(t, want...)
	}
}

func TestRetainedMessages(t *testing.T) {
	e := newEnv(t)
	pub := e.thing("pub", strings.Join([]string{connectSelf, allow("iot:Publish", "*")}, ","))
	a := e.thing("a", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*"), allow("iot:Receive", "topic/r/*")}, ","))
	b := e.thing("b", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*"), allow("iot:Receive", "topic/other/*")}, ","))
	e.start(0)
	p := e.mustConnect5(pub)
	p.MustPublish(t, "r/1", "kept", 1, true)
	ca, cb := e.mustConnect5(a), e.mustConnect5(b)
	ca.Subscribe(t, 1, "r/#")
	if m := ca.Expect(t, "r/1", "kept"); !m.Retain {
		t.Error("retained message delivered without the retain flag")
	}
	cb.Subscribe(t, 1, "r/#")
	cb.ExpectNothing(t, 200*time.Millisecond)
	e.waitLog(t, "client=b", "action=iot:Receive", "resource="+arn+"topic/r/1")
}

func TestWillMessage(t *testing.T) {
	e := newEnv(t)
	dev := e.thing("dev", strings.Join([]string{connectSelf, allow("iot:Publish", "topic/status/${iot:Connection.Thing.ThingName}")}, ","))
	watcher := e.thing("watcher", strings.Join([]string{connectSelf, allow("iot:Subscribe iot:Receive", "*")}, ","))
	e.start(0)
	w := e.mustConnect5(watcher)
	w.Subscribe(t, 1, "status/#")
	d, _, err := e.connect5(dev, "dev", func(c *paho.Connect) {
		c.WillMessage = &paho.WillMessage{Topic: "status/dev", Payload: []byte("offline"), QoS: 1}
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Drop()
	w.Expect(t, "status/dev", "offline")
}

// TestPolicyChange: a connected client's policies are read again within
// the TTL; a CONNECT reads them at once.
func TestPolicyChange(t *testing.T) {
	e := newEnv(t)
	narrow := strings.Join([]string{connectSelf, allow("iot:Publish", "topic/a/*")}, ",")
	th := e.thing("th", narrow)
	e.start(100 * time.Millisecond)
	c := e.mustConnect5(th)
	if rc := c.Publish(t, "b/1", "x", 1, false); rc != 0x87 {
		t.Fatalf("PUBACK %#x; want 0x87", rc)
	}
	e.setPolicy("th", strings.Join([]string{connectSelf, allow("iot:Publish", "*")}, ","))
	testtool.Eventually(t, "the wider policy applied", func() bool { return c.Publish(t, "b/1", "x", 1, false) == 0 })
	e.setPolicy("th", narrow)
	testtool.Eventually(t, "the narrower policy applied", func() bool { return c.Publish(t, "b/1", "x", 1, false) == 0x87 })

	e.setPolicy("th", allow("iot:Publish", "*"))
	if _, ack, err := e.connect5(th, "th"); err == nil || ack.ReasonCode != 0x87 {
		t.Errorf("connect after iot:Connect was removed: %+v, %v; want 0x87", ack, err)
	}
}

// TestTopicAlias: a message sent by topic alias is checked on the topic
// the alias stands for.
func TestTopicAlias(t *testing.T) {
	e := newEnv(t)
	th := e.thing("th", strings.Join([]string{connectSelf, allow("iot:Publish", "topic/a/*"), allow("iot:Subscribe iot:Receive", "*")}, ","))
	e.start(0)
	c := e.mustConnect5(th)
	c.Subscribe(t, 1, "#")
	pub := func(topic string, alias uint16) byte {
		ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
		defer cancel()
		r, err := c.Paho.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{TopicAlias: &alias}})
		if r == nil {
			t.Fatalf("publish %q alias %d: %v", topic, alias, err)
		}
		return r.ReasonCode
	}
	if rc := pub("a/1", 1); rc != 0 {
		t.Errorf("a/1 as alias 1: %#x", rc)
	}
	if rc := pub("", 1); rc != 0 {
		t.Errorf("alias 1: %#x", rc)
	}
	if rc := pub("b/1", 2); rc != 0x87 {
		t.Errorf("b/1 as alias 2: %#x; want 0x87", rc)
	}
	if rc := pub("", 2); rc != 0x87 {
		t.Errorf("alias 2: %#x; want 0x87", rc)
	}
	c.Expect(t, "a/1", "x")
	c.Expect(t, "a/1", "x")
	c.ExpectNothing(t, 100*time.Millisecond)
}

// TestSharedSubscription: a shared group gets each message once, at a
// member allowed to receive it.
func TestSharedSubscription(t *testing.T) {
	e := newEnv(t)
	w1 := e.thing("w1", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*"), allow("iot:Receive", "topic/jobs/*")}, ","))
	w2 := e.thing("w2", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*")}, ","))
	pub := e.thing("pub", strings.Join([]string{connectSelf, allow("iot:Publish", "*")}, ","))
	e.start(0)
	c1, c2, p := e.mustConnect5(w1), e.mustConnect5(w2), e.mustConnect5(pub)
	c1.Subscribe(t, 1, "$share/workers/jobs/#")
	c2.Subscribe(t, 1, "$share/workers/jobs/#")
	for i := range 10 {
		p.Publish(t, "jobs/1", string(rune('0'+i)), 1, false)
	}
	for i := range 10 {
		c1.Expect(t, "jobs/1", string(rune('0'+i)))
	}
	c2.ExpectNothing(t, 100*time.Millisecond)
}

// TestMinimalCorePolicy: the Minimal AWS IoT Policy of a Greengrass core
// allows its $aws/things/core-name-* topics only; the brokered topics of
// a fleet need statements the operator adds.
func TestMinimalCorePolicy(t *testing.T) {
	e := newEnv(t)
	doc, err := os.ReadFile("../api/testdata/minimal-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	doc = bytes.ReplaceAll(doc, []byte("region:account-id"), []byte("us-east-1:000000000000"))
	core := e.thing("core-name", allow("iot:Connect", "client/nobody"))
	if err := e.st.PutPolicy("minimal", doc); err != nil {
		t.Fatal(err)
	}
	if err := e.st.AttachPolicy("minimal", core.id); err != nil {
		t.Fatal(err)
	}
	watcher := e.thing("watcher", strings.Join([]string{connectSelf, allow("iot:Subscribe", "*"),
		allow("iot:Receive", "topic/$aws/things/*/shadow/update", "topic/sensors/*")}, ","))
	e.start(0)
	w := e.mustConnect5(watcher)
	if codes := w.Subscribe(t, 1, "$aws/things/+/shadow/#", "sensors/#"); string(codes) != "\x01\x01" {
		t.Fatalf("watcher SUBACK %x", codes)
	}

	c, _, err := e.connect5(core, "any-client-id") // iot:Connect on "*"
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.Publish(t, "$aws/things/core-name-1/shadow/get", "{}", 1, false); rc != 0 {
		t.Errorf("publish on the core's shadow topic: %#x", rc)
	}
	if rc := c.Publish(t, "$aws/things/core-name-1/shadow/update", "{}", 1, false); rc != 0 {
		t.Errorf("publish on the core's shadow topic: %#x", rc)
	}
	// Delivered: the watcher may receive .../update, not .../get.
	if m := w.Next(t); m.Topic != "$aws/things/core-name-1/shadow/update" {
		t.Errorf("watcher got %s first; want the shadow update", m.Topic)
	}
	e.waitLog(t, "client=watcher", "action=iot:Receive", "resource="+arn+"topic/$aws/things/core-name-1/shadow/get")
	if rc := c.Publish(t, "sensors/dev1/temp", "21", 1, false); rc != 0x87 {
		t.Errorf("publish of a device message with the minimal policy: %#x; want 0x87", rc)
	}
	if codes := c.Subscribe(t, 1, "cloud/core-name/#"); string(codes) != "\x87" {
		t.Errorf("subscribe to cloud messages with the minimal policy: SUBACK %x; want 87", codes)
	}

	// The operator adds the bridge's statements.
	e.setPolicy("bridge", strings.Join([]string{allow("iot:Publish", "topic/sensors/*"),
		allow("iot:Subscribe", "topicfilter/cloud/${iot:Connection.Thing.ThingName}/#"),
		allow("iot:Receive", "topic/cloud/${iot:Connection.Thing.ThingName}/*")}, ","))
	if err := e.st.AttachPolicy("bridge", core.id); err != nil {
		t.Fatal(err)
	}
	c.Disconnect()
	c, _, err = e.connect5(core, "core-name")
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.Publish(t, "sensors/dev1/temp", "21", 1, false); rc != 0 {
		t.Errorf("publish of a device message with the bridge's statements: %#x", rc)
	}
	w.Expect(t, "sensors/dev1/temp", "21")
	if codes := c.Subscribe(t, 1, "cloud/core-name/#"); string(codes) != "\x01" {
		t.Errorf("subscribe to cloud messages with the bridge's statements: SUBACK %x", codes)
	}
}
