package store

import (
	"errors"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/tools/ggcloud/policy"
)

const (
	coreCert   = "1111111111111111111111111111111111111111111111111111111111111111"
	deviceCert = "2222222222222222222222222222222222222222222222222222222222222222"
	discover   = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover","Resource":"arn:aws:iot:us-east-1:1:thing/${iot:Connection.Thing.ThingName}"}}`
)

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, th := range []Thing{{"gw", "arn:aws:iot:us-east-1:1:thing/gw"}, {"sensor", "arn:aws:iot:us-east-1:1:thing/sensor"}} {
		if err := s.CreateThing(th); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.RegisterCertificate(Certificate{ID: deviceCert, Thing: "sensor", PEM: "pem"}))
	must(s.PutPolicy("discover", []byte(discover)))
	must(s.AttachPolicy("discover", deviceCert))
	must(s.AttachPolicy("discover", deviceCert)) // twice is once
	must(s.SetConnectivity("gw", []Endpoint{{Id: "lan", HostAddress: "192.168.1.20", PortNumber: 8883}}))
	must(s.Close())

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c, err := s.CallerOf(deviceCert)
	if err != nil {
		t.Fatal(err)
	}
	if c.Thing.Name != "sensor" || len(c.Policies) != 1 {
		t.Fatalf("caller %+v; want sensor with one policy", c)
	}
	req := policy.Request{Action: "greengrass:Discover", Resource: "arn:aws:iot:us-east-1:1:thing/sensor", ThingName: c.Thing.Name}
	if d := policy.Decide(c.Policies, req); !d.Allowed {
		t.Errorf("the attached policy does not allow the device's discovery: %s", d.Reason)
	}
	eps, err := s.Connectivity("gw")
	if err != nil || len(eps) != 1 || eps[0].HostAddress != "192.168.1.20" {
		t.Errorf("connectivity after restart = %+v, %v", eps, err)
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateThing(Thing{Name: "gw"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want string
		is   error
	}{
		{"duplicate thing", s.CreateThing(Thing{Name: "gw"}), "thing gw", ErrExists},
		{"bad thing name", s.CreateThing(Thing{Name: "a/b"}), `"a/b"`, nil},
		{"certificate of an unknown thing", s.RegisterCertificate(Certificate{ID: coreCert, Thing: "nobody"}), "thing nobody", ErrNotFound},
		{"bad certificate ID", s.RegisterCertificate(Certificate{ID: "xyz", Thing: "gw"}), `"xyz"`, nil},
		{"bad policy", s.PutPolicy("p", []byte(`{"Version":"2012-10-17"}`)), "Statement: missing", nil},
		{"attach a missing policy", s.AttachPolicy("nope", coreCert), "policy nope", ErrNotFound},
		{"bad endpoint", s.SetConnectivity("gw", []Endpoint{{HostAddress: "x", PortNumber: 0}}), "ConnectivityInfo[0]", nil},
		{"connectivity of an unknown thing", s.SetConnectivity("nobody", nil), "thing nobody", ErrNotFound},
		{"group with an unknown device", s.PutGroup(Group{ID: "g1", Core: "gw", Devices: []string{"nobody"}, CAs: []string{"pem"}}), "thing nobody", ErrNotFound},
		{"group without a CA", s.PutGroup(Group{ID: "g1", Core: "gw"}), "at least one CA", nil},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) || tt.is != nil && !errors.Is(tt.err, tt.is) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, tt.err, tt.want)
		}
	}
	if _, err := s.Certificate(coreCert); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused registration left a certificate: %v", err)
	}
	if _, err := s.CallerOf(deviceCert); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unregistered certificate is a caller: %v", err)
	}
	if groups, err := s.GroupsOf("gw"); err != nil || len(groups) != 0 {
		t.Errorf("groups after refused puts = %+v, %v; want none", groups, err)
	}
	if eps, err := s.Connectivity("gw"); err != nil || len(eps) != 0 {
		t.Errorf("connectivity after a refused update = %+v, %v; want none", eps, err)
	}
}

func TestSecondOpenWaitsThenFails(t *testing.T) {
	if testing.Short() {
		return
	}
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "in use by another ggcloud") {
		t.Errorf("second Open = %v; want an in-use error", err)
	}
}
