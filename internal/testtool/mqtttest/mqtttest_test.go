package mqtttest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// broker starts a mochi broker behind TLS on a loopback port and returns
// its address and the client side of TLS.
func broker(t *testing.T) (string, *tls.Config) {
	t.Helper()
	ca, err := pki.NewCA("mqtttest CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyspec.ECP256.Generate()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: "broker", DNSNames: []string{"localhost"},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	serverTLS := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}}}
	if err := srv.AddListener(listeners.NewNet("tls", tls.NewListener(ln, serverTLS))); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"}
}

func TestPublishSubscribe(t *testing.T) {
	addr, cfg := broker(t)
	sub, pub := Connect(t, addr, cfg, "sub"), Connect(t, addr, cfg, "pub")
	sub.MustSubscribe(t, 1, "a/#")
	// More than any channel buffer the clients had before: nothing is lost.
	const n = 2000
	for i := range n {
		pub.MustPublish(t, "a/x", "m", 0, false)
		if i == n-1 {
			pub.MustPublish(t, "a/y", "last", 1, true)
		}
	}
	got := sub.ReceiveUntil(t, "last")
	if len(got) != n+1 {
		t.Fatalf("received %d messages; want %d", len(got), n+1)
	}
	if m := got[n]; m.Topic != "a/y" || m.QoS != 1 {
		t.Errorf("last message %v; want a/y at QoS 1", m)
	}
	// A new subscriber gets the retained message with the retain flag.
	late := Connect(t, addr, cfg, "late")
	late.MustSubscribe(t, 1, "a/y")
	if m := late.Expect(t, "a/y", "last"); !m.Retain {
		t.Errorf("retained message %v without the retain flag", m)
	}
	late.ExpectNothing(t, 50*time.Millisecond)
}

func TestDropSendsWill(t *testing.T) {
	addr, cfg := broker(t)
	watcher := Connect(t, addr, cfg, "watcher")
	watcher.MustSubscribe(t, 1, "status/#")
	dev, _, err := Dial(t, addr, cfg, willConnect("dev", "status/dev", "offline"))
	if err != nil {
		t.Fatal(err)
	}
	dev.Drop()
	watcher.Expect(t, "status/dev", "offline")
	select {
	case <-dev.Done():
	case <-time.After(5 * time.Second):
		t.Error("Done not closed after Drop")
	}
}

func TestInbox(t *testing.T) {
	b := NewInbox("test")
	if _, ok := b.TryNext(10 * time.Millisecond); ok {
		t.Fatal("an empty inbox gave a message")
	}
	for _, p := range []string{"one", "two", "control", "after"} {
		b.Put(Message{Topic: "t", Payload: p})
	}
	AssertPayloads(t, "test", b.ReceiveUntil(t, "control"), "one", "two", "control", "after")
	b.Discard()
	b.Put(Message{Payload: "dropped"})
	b.ExpectNothing(t, 10*time.Millisecond)
}

func willConnect(clientID, topic, payload string) *paho.Connect {
	return &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30,
		WillMessage: &paho.WillMessage{Topic: topic, Payload: []byte(payload), QoS: 1}}
}
