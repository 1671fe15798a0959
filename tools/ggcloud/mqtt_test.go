package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

var mqttReadyLine = regexp.MustCompile(`msg="ggcloud MQTT broker ready" addr=(\S+)`)

// TestServeMQTT runs `ggcloud serve --mqtt-listen`: things registered
// with the CLI connect with their certificates, exchange messages as
// their policies allow, are refused what they do not allow, and are
// disconnected when ggcloud stops.
func TestServeMQTT(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	policies := map[string]string{
		"gw": `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
 {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:000000000000:topic/sensors/*"}]}`,
		"cloud": `{"Version":"2012-10-17","Statement":[
 {"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:000000000000:client/${iot:Connection.Thing.ThingName}"},
 {"Effect":"Allow","Action":["iot:Subscribe","iot:Receive"],"Resource":["arn:aws:iot:us-east-1:000000000000:topicfilter/sensors/#","arn:aws:iot:us-east-1:000000000000:topic/sensors/*"]}]}`,
	}
	ids := map[string]thing{}
	for _, name := range []string{"gw", "cloud"} {
		ids[name] = p.issue(t, name, time.Now().Add(time.Hour))
		mustRun(t, "--data", data, "thing", "create", name)
		mustRun(t, "--data", data, "cert", "register", "--thing", name, "--pem", ids[name].certFile)
		mustRun(t, "--data", data, "policy", "create", name, "--document", write(t, p.dir, name+"-policy.json", []byte(policies[name])))
		mustRun(t, "--data", data, "policy", "attach", name, "--cert", ids[name].id)
	}
	s := serve(t, data, p, "--mqtt-listen", "127.0.0.1:0")
	m := mqttReadyLine.FindStringSubmatch(s.stderr.String())
	if m == nil {
		t.Fatalf("no MQTT ready line:\n%s", s.stderr)
	}
	addr := m[1]

	connect := func(name string, got chan *paho.Publish) *paho.Client {
		t.Helper()
		roots := x509.NewCertPool()
		roots.AddCert(p.ca.Cert)
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{ids[name].tls}})
		if err != nil {
			t.Fatal(err)
		}
		c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
				got <- r.Packet
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: name, CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatalf("connect %s: %v", name, err)
		}
		return c
	}
	got := make(chan *paho.Publish, 16)
	cloud, gw := connect("cloud", got), connect("gw", make(chan *paho.Publish, 16))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ack, err := cloud.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/#", QoS: 1}, {Topic: "secret/#", QoS: 1}}}); ack == nil || string(ack.Reasons) != "\x01\x87" {
		t.Fatalf("SUBACK %+v, %v; want 01 87", ack, err)
	}
	if r, err := gw.Publish(ctx, &paho.Publish{Topic: "sensors/gw/temp", QoS: 1, Payload: []byte("21")}); err != nil || r.ReasonCode != 0 {
		t.Fatalf("publish: %+v, %v", r, err)
	}
	select {
	case msg := <-got:
		if msg.Topic != "sensors/gw/temp" || string(msg.Payload) != "21" {
			t.Errorf("got %s %q", msg.Topic, msg.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered")
	}
	if r, _ := gw.Publish(ctx, &paho.Publish{Topic: "secret/1", QoS: 1, Payload: []byte("x")}); r == nil || r.ReasonCode != 0x87 {
		t.Errorf("publish outside the policy: %+v; want PUBACK 0x87", r)
	}
	for _, want := range []string{
		`action=iot:Subscribe resource=arn:aws:iot:us-east-1:000000000000:topicfilter/secret/#`,
		`action=iot:Publish resource=arn:aws:iot:us-east-1:000000000000:topic/secret/1`,
	} {
		if !strings.Contains(s.stderr.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, s.stderr)
		}
	}

	if code := s.shutdown(t); code != 0 {
		t.Fatalf("serve exited %d:\n%s", code, s.stderr)
	}
	select {
	case <-cloud.Done():
	case <-time.After(5 * time.Second):
		t.Error("MQTT client still connected after ggcloud stopped")
	}
}

func TestServeMQTTBadListen(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	code, _, stderr := ggcloud("--data", data, "serve", "--listen", "127.0.0.1:0", "--cert", p.serverCert, "--key", p.server, "--mqtt-listen", "nonsense")
	if code != 1 || !strings.Contains(stderr, "--mqtt-listen") {
		t.Errorf("exit %d, stderr %q; want 1 naming --mqtt-listen", code, stderr)
	}
}
