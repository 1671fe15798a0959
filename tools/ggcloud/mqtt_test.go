package main

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
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

	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)
	connect := func(name string) *mqtttest.Client {
		t.Helper()
		return mqtttest.Connect(t, addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{ids[name].tls}}, name)
	}
	cloud, gw := connect("cloud"), connect("gw")
	if codes := cloud.Subscribe(t, 1, "sensors/#", "secret/#"); string(codes) != "\x01\x87" {
		t.Fatalf("SUBACK %x; want 01 87", codes)
	}
	if rc := gw.Publish(t, "sensors/gw/temp", "21", 1, false); rc != 0 {
		t.Fatalf("publish: PUBACK %#x; want 0", rc)
	}
	if msg := cloud.Next(t); msg.Topic != "sensors/gw/temp" || msg.Payload != "21" {
		t.Errorf("got %v; want sensors/gw/temp \"21\"", msg)
	}
	if rc := gw.Publish(t, "secret/1", "x", 1, false); rc != 0x87 {
		t.Errorf("publish outside the policy: PUBACK %#x; want 0x87", rc)
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
	case <-time.After(testtool.Timeout):
		t.Errorf("MQTT client still connected %v after ggcloud stopped", testtool.Timeout)
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
