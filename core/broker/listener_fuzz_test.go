package broker

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
)

// fuzzPacket frames an MQTT control packet.
func fuzzPacket(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

func fuzzString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// fuzzBroker is a live broker on 127.0.0.1 with a device whose bytes the
// fuzzer writes, and a control pair whose messages must keep flowing.
type fuzzBroker struct {
	b       *Broker
	fuzzTLS *tls.Config
	pub     *paho.Client
	got     chan string
	n       atomic.Int64
}

func startFuzzBroker(tb testing.TB) *fuzzBroker {
	tb.Helper()
	ca, err := pki.NewCA("fuzz CA", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	issue := func(cn string, usage pki.Usage) tls.Certificate {
		key, err := keyspec.ECP256.Generate()
		if err != nil {
			tb.Fatal(err)
		}
		cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: cn, DNSNames: []string{"localhost"}, Usage: usage, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			tb.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	server := issue("core", pki.ServerAuth)
	certs := map[string]tls.Certificate{}
	var devices []Thing
	for _, n := range []string{"fz", "ctlpub", "ctlsub"} {
		certs[n] = issue(n, pki.ClientAuth)
		devices = append(devices, Thing{Name: n, ARN: arnPrefix + n, CertificateID: pki.CertificateID(certs[n].Certificate[0])})
	}
	table, err := router.New([]router.Subscription{sub("s1", "ctlpub", "ctl/#", "ctlsub"), sub("s2", "fz", "fz/#", "ctlsub")})
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{Profile: tlsconf.Strict, ClientCAs: pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &server, nil }})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b, err := New(Options{Listener: ln, TLS: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		Group{ID: "fuzz", Devices: devices, Table: table})
	if err != nil {
		tb.Fatal(err)
	}
	if err := b.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	clientTLS := func(n string) *tls.Config {
		return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{certs[n]},
			ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	}
	fb := &fuzzBroker{b: b, fuzzTLS: clientTLS("fz"), got: make(chan string, 1024)}
	connect := func(n string, onPublish func(paho.PublishReceived) (bool, error)) *paho.Client {
		conn, err := tls.Dial("tcp", ln.Addr().String(), clientTLS(n))
		if err != nil {
			tb.Fatal(err)
		}
		cc := paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)}
		if onPublish != nil {
			cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){onPublish}
		}
		c := paho.NewClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: n, CleanStart: true, KeepAlive: 60}); err != nil {
			tb.Fatalf("connect %s: %v", n, err)
		}
		tb.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
		return c
	}
	subc := connect("ctlsub", func(r paho.PublishReceived) (bool, error) {
		if r.Packet.Topic == "ctl/x" {
			fb.got <- string(r.Packet.Payload)
		}
		return true, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := subc.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ctl/#", QoS: 1}, {Topic: "fz/#", QoS: 0}}}); err != nil {
		tb.Fatal(err)
	}
	fb.pub = connect("ctlpub", nil)
	return fb
}

// alive fails unless a control message still goes through the broker.
func (fb *fuzzBroker) alive(t *testing.T) {
	t.Helper()
	want := fmt.Sprint(fb.n.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := fb.pub.Publish(ctx, &paho.Publish{Topic: "ctl/x", QoS: 1, Payload: []byte(want)}); err != nil {
		t.Fatalf("control publish: %v", err)
	}
	for {
		select {
		case got := <-fb.got:
			if got == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("control message %s not delivered: the broker stopped serving", want)
		}
	}
}

// FuzzListener drives the live listener: after a valid mutual-TLS
// handshake and CONNECT, a registered device writes arbitrary bytes. The
// broker may disconnect it, but must neither crash nor stop serving the
// others.
func FuzzListener(f *testing.F) {
	publish := func(topic, payload string) []byte {
		return fuzzPacket(0x30, append(append(fuzzString(topic), 0), payload...))
	}
	for _, seed := range [][]byte{
		publish("fz/a", "hello"),
		fuzzPacket(0x32, append(append(fuzzString("fz/a"), 0, 1, 0), "qos1"...)),
		fuzzPacket(0x34, append(append(fuzzString("fz/a"), 0, 2, 0), "qos2"...)),
		fuzzPacket(0x82, append(append([]byte{0, 1, 0}, fuzzString("fz/#")...), 1)),
		fuzzPacket(0xa2, append([]byte{0, 2, 0}, fuzzString("fz/#")...)),
		{0xc0, 0x00}, // PINGREQ
		{0xe0, 0x00}, // DISCONNECT
		{0x00, 0x00},
		{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f},
		{0x30, 0x80, 0x80, 0x80, 0x40},
		fuzzPacket(0x10, append(append(fuzzString("MQTT"), 5, 2, 0, 30, 0), fuzzString("fz")...)),
		publish("fz/\xff", "bad utf-8"),
		publish("fz/#", "wildcard"),
		fuzzPacket(0x30, append(fuzzString("fz/a"), 0x7f, 1)),
		fuzzPacket(0x62, []byte{0, 9, 0}), // PUBREL for an unknown ID
		fuzzPacket(0xf0, []byte{0x18, 0}), // AUTH
	} {
		f.Add(seed)
	}
	fb := startFuzzBroker(f)
	connect := fuzzPacket(0x10, append(append(fuzzString("MQTT"), 5, 2, 0, 30, 0), fuzzString("fz")...))
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := tls.Dial("tcp", fb.b.Addr().String(), fb.fuzzTLS)
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write(connect); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		head := make([]byte, 2)
		if _, err := io.ReadFull(r, head); err != nil || head[0] != 0x20 {
			t.Fatalf("no CONNACK (% x, %v)", head, err)
		}
		ack := make([]byte, head[1])
		if _, err := io.ReadFull(r, ack); err != nil || len(ack) < 2 || ack[1] != 0 {
			t.Fatalf("CONNACK % x, %v", ack, err)
		}
		_, _ = conn.Write(data)
		// Let the broker act on the bytes before the control round trip;
		// a short read also drains what it answers.
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		_, _ = io.Copy(io.Discard, r)
		fb.alive(t)
	})
}
