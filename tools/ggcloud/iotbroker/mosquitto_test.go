package iotbroker

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestMosquitto interoperates with the real mosquitto clients over TLS
// with client certificates, MQTT 3.1.1 and 5.
func TestMosquitto(t *testing.T) {
	sub, pub := testtool.Require(t, "mosquitto_sub"), testtool.Require(t, "mosquitto_pub")
	e := newEnv(t)
	gw := e.thing("gw", strings.Join([]string{connectSelf, allow("iot:Publish", "topic/sensors/*")}, ","))
	cloud := e.thing("cloud", strings.Join([]string{connectSelf,
		allow("iot:Subscribe", "topicfilter/sensors/#"), allow("iot:Receive", "topic/sensors/*")}, ","))
	stranger := e.issue("stranger", time.Now().Add(time.Hour))
	e.start(0)
	_, port, _ := strings.Cut(e.broker.Addr().String(), ":")
	base := func(id identity, v string) []string {
		return []string{"-h", "127.0.0.1", "-p", port, "--cafile", e.caFile, "--cert", id.certFile, "--key", id.keyFile,
			"-i", id.name, "-V", v}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			out := &testtool.Buffer{}
			s := exec.CommandContext(ctx, sub, append(base(cloud, v), "-t", "sensors/#", "-q", "1", "-C", "1", "-W", "10", "-F", "got %t %p")...)
			s.Stdout, s.Stderr = out, out
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Wait() }()
			deadline := time.Now().Add(10 * time.Second)
			// mosquitto_sub's output is block-buffered: ask the broker.
			for !e.subscribed("cloud") {
				if time.Now().After(deadline) {
					t.Fatalf("mosquitto_sub did not subscribe:\n%s", out)
				}
				time.Sleep(10 * time.Millisecond)
			}
			p, err := exec.CommandContext(ctx, pub, append(base(gw, v), "-t", "sensors/gw/temp", "-m", "21", "-q", "1")...).CombinedOutput()
			if err != nil {
				t.Fatalf("mosquitto_pub: %v\n%s", err, p)
			}
			if err := <-done; err != nil {
				t.Fatalf("mosquitto_sub: %v\n%s", err, out)
			}
			if !strings.Contains(out.String(), "got sensors/gw/temp 21") {
				t.Errorf("mosquitto_sub output lacks the message:\n%s", out)
			}

			// Refusals as mosquitto reports them.
			o, err := exec.CommandContext(ctx, pub, append(base(stranger, v), "-t", "sensors/x", "-m", "x", "-q", "1")...).CombinedOutput()
			if err == nil || !strings.Contains(strings.ToLower(string(o)), "not authori") {
				t.Errorf("mosquitto_pub with an unregistered certificate: %v; want a refusal, not authorized\n%s", err, o)
			}
			o, _ = exec.CommandContext(ctx, sub, append(base(cloud, v), "-t", "secret/#", "-q", "1", "-W", "5")...).CombinedOutput()
			if !strings.Contains(string(o), "All subscription requests were denied") {
				t.Errorf("mosquitto_sub on a refused filter:\n%s", o)
			}
			o, err = exec.CommandContext(ctx, pub, append(base(gw, v), "-t", "secret/x", "-m", "x", "-q", "1")...).CombinedOutput()
			if v == "mqttv5" && !strings.Contains(string(o), "Publish 1 failed: Not authorized") ||
				v == "mqttv311" && (err == nil || !strings.Contains(string(o), "connection was lost")) {
				t.Errorf("mosquitto_pub on a refused topic: %v\n%s", err, o)
			}
			e.waitLog(t, "client=gw", "action=iot:Publish", "resource="+arn+"topic/secret/x")
		})
	}
}

// subscribed reports whether a client with clientID is connected and has
// a subscription.
func (e *env) subscribed(clientID string) bool {
	cl, ok := e.broker.srv.Clients.Get(clientID)
	return ok && !cl.Closed() && cl.State.Subscriptions.Len() > 0
}
