package iotbroker

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pahopackets "github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// arn is the prefix of the test store's ARNs.
const arn = "arn:aws:iot:us-east-1:000000000000:"

// env is a store, a CA that issues client and server certificates, and
// a broker once started.
type env struct {
	t      testing.TB
	dir    string
	st     *store.Store
	ca     *pki.CA
	caFile string
	server tls.Certificate
	logs   *testtool.Buffer
	broker *Broker
	// checksOff starts the broker with the policy checks off (benchmarks).
	checksOff bool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, st: st, ca: ca, logs: &testtool.Buffer{}}
	e.caFile = e.write("ca.pem", pki.EncodeCertificate(ca.Cert))
	key, err := keys.Generate(keys.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, Usage: pki.ServerAuth, NotAfter: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	e.server = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: crypto.Signer(key), Leaf: cert}
	return e
}

func (e *env) write(name string, data []byte) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// serverTLS is ggcloud's server TLS configuration, as serve.go makes it.
func (e *env) serverTLS() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{e.server},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			c := cs.PeerCertificates[0]
			if now := time.Now(); now.Before(c.NotBefore) || now.After(c.NotAfter) {
				return errors.New("client certificate outside its validity")
			}
			return nil
		},
	}
}

// start starts a broker on a free loopback port; it is closed at cleanup.
func (e *env) start(ttl time.Duration) *Broker {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	b, err := New(Options{Listener: ln, TLS: e.serverTLS(), Store: e.st,
		Log: slog.New(slog.NewTextHandler(e.logs, nil)), PolicyTTL: ttl})
	if err != nil {
		e.t.Fatal(err)
	}
	b.enforce = !e.checksOff
	if err := b.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.broker = b
	e.t.Cleanup(func() { b.Close() })
	return b
}

// identity is a client certificate and its files.
type identity struct {
	name              string
	id                string
	tls               tls.Certificate
	certFile, keyFile string
}

// issue makes a client certificate for name valid until notAfter; it is
// not registered.
func (e *env) issue(name string, notAfter time.Time) identity {
	e.t.Helper()
	key, err := keys.Generate(keys.ECP256)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := e.ca.Issue(key.Public(), pki.Leaf{CommonName: name, Usage: pki.ClientAuth, NotBefore: notAfter.Add(-48 * time.Hour), NotAfter: notAfter})
	if err != nil {
		e.t.Fatal(err)
	}
	keyPEM, err := keys.MarshalPEM(key)
	if err != nil {
		e.t.Fatal(err)
	}
	id := pki.CertificateID(c.Raw)
	return identity{
		name:     name,
		id:       id,
		tls:      tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: crypto.Signer(key)},
		certFile: e.write(name+"-"+id[:8]+".pem", pki.EncodeCertificate(c)),
		keyFile:  e.write(name+"-"+id[:8]+".key", keyPEM),
	}
}

// thing registers thing name with a new certificate and attaches a
// policy named after it holding statements (a JSON array's elements).
func (e *env) thing(name, statements string) identity {
	e.t.Helper()
	id := e.issue(name, time.Now().Add(time.Hour))
	if err := e.st.CreateThing(store.Thing{Name: name, ARN: arn + "thing/" + name}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.RegisterCertificate(store.Certificate{ID: id.id, PEM: string(pki.EncodeCertificate(mustParse(e.t, id))), Thing: name}); err != nil {
		e.t.Fatal(err)
	}
	e.setPolicy(name, statements)
	if err := e.st.AttachPolicy(name, id.id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// setPolicy stores (or replaces) policy name with statements.
func (e *env) setPolicy(name, statements string) {
	e.t.Helper()
	doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[%s]}`, statements)
	if err := e.st.PutPolicy(name, []byte(doc)); err != nil {
		e.t.Fatal(err)
	}
}

func mustParse(t testing.TB, id identity) *x509.Certificate {
	c, err := x509.ParseCertificate(id.tls.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// allow is a policy statement allowing actions on resources (each
// prefixed with arn, unless "*").
func allow(actions string, resources ...string) string { return statement("Allow", actions, resources) }

// deny is a policy statement denying actions on resources.
func deny(actions string, resources ...string) string { return statement("Deny", actions, resources) }

func statement(effect, actions string, resources []string) string {
	var acts, res []string
	for _, a := range strings.Fields(actions) {
		acts = append(acts, fmt.Sprintf("%q", a))
	}
	for _, r := range resources {
		if r != "*" {
			r = arn + r
		}
		res = append(res, fmt.Sprintf("%q", r))
	}
	return fmt.Sprintf(`{"Effect":%q,"Action":[%s],"Resource":[%s]}`, effect, strings.Join(acts, ","), strings.Join(res, ","))
}

// connectSelf lets a thing connect with its own name as client ID.
var connectSelf = allow("iot:Connect", "client/${iot:Connection.Thing.ThingName}")

// waitLog waits for a log line containing every one of parts.
func (e *env) waitLog(t testing.TB, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			ok := true
			for _, p := range parts {
				if !strings.Contains(line, p) {
					ok = false
					break
				}
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", parts, e.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dial opens a TLS connection to the broker with id's certificate.
func (e *env) dial(id identity) (*tls.Conn, error) {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	return tls.Dial("tcp", e.broker.Addr().String(), &tls.Config{
		RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{id.tls},
	})
}

// client5 is a connected MQTT 5 client and the messages it received.
type client5 struct {
	*paho.Client
	got chan *paho.Publish
}

// connect5 connects id over MQTT 5 with clientID; configure may change
// the CONNECT.
func (e *env) connect5(id identity, clientID string, configure ...func(*paho.Connect)) (*client5, *paho.Connack, error) {
	e.t.Helper()
	conn, err := e.dial(id)
	if err != nil {
		return nil, nil, err
	}
	c := &client5{got: make(chan *paho.Publish, 1024)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: pahopackets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(r paho.PublishReceived) (bool, error) {
				select {
				case c.got <- r.Packet:
				default:
				}
				return true, nil
			},
		},
	})
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}
	for _, f := range configure {
		f(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		conn.Close()
		return nil, ack, err
	}
	e.t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c, ack, nil
}

func (e *env) mustConnect5(id identity) *client5 {
	e.t.Helper()
	c, _, err := e.connect5(id, id.name)
	if err != nil {
		e.t.Fatalf("connect %s: %v", id.name, err)
	}
	return c
}

// subscribe subscribes to filters at QoS 1 and returns the reason codes.
func (c *client5) subscribe(t testing.TB, filters ...string) []byte {
	t.Helper()
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Subscribe(ctx, s)
	if ack == nil {
		t.Fatalf("subscribe %q: %v", filters, err)
	}
	return ack.Reasons
}

// publish publishes payload on topic at qos and returns the PUBACK's
// reason code (0 for QoS 0).
func (c *client5) publish(t testing.TB, topic string, qos byte, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if r == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r.ReasonCode
}

// expect waits for a message on topic with payload.
func (c *client5) expect(t testing.TB, topic, payload string) *paho.Publish {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case m := <-c.got:
			if m.Topic == topic && string(m.Payload) == payload {
				return m
			}
			t.Logf("ignoring %s %q while waiting for %s %q", m.Topic, m.Payload, topic, payload)
		case <-timeout:
			t.Fatalf("no message %s %q", topic, payload)
			return nil
		}
	}
}

// next returns the next message, waiting up to 5 s.
func (c *client5) next(t testing.TB) *paho.Publish {
	t.Helper()
	select {
	case m := <-c.got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message")
		return nil
	}
}

// expectNothing checks that no message arrives for a while.
func (c *client5) expectNothing(t testing.TB, wait time.Duration) {
	t.Helper()
	select {
	case m := <-c.got:
		t.Errorf("unexpected message %s %q", m.Topic, m.Payload)
	case <-time.After(wait):
	}
}

// client3 is a raw MQTT 3.1.1 connection, for what paho.golang (MQTT 5
// only) cannot speak.
type client3 struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
}

// connect3 sends an MQTT 3.1.1 CONNECT and returns the CONNACK's return
// code; configure may change the CONNECT.
func (e *env) connect3(id identity, clientID string, configure ...func(*packets.ConnectParams)) (*client3, byte) {
	e.t.Helper()
	conn, err := e.dial(id)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &client3{t: e.t, conn: conn, r: bufio.NewReader(conn)}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: clientID}}
	for _, f := range configure {
		f(&pk.Connect)
	}
	c.send(pk)
	ack, err := c.read()
	if err != nil {
		e.t.Fatalf("read CONNACK: %v", err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		e.t.Fatalf("got packet type %d; want CONNACK", ack.FixedHeader.Type)
	}
	return c, ack.ReasonCode
}

func (c *client3) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = 4
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one packet, within 5 s.
func (c *client3) read() (packets.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	var pk packets.Packet
	hb, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = 4
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

func (c *client3) publish(topic string, qos byte, payload string, id uint16) {
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic, PacketID: id, Payload: []byte(payload)})
}

func (c *client3) subscribe(id uint16, filters ...string) []byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: 1})
	}
	c.send(pk)
	ack, err := c.read()
	if err != nil || ack.FixedHeader.Type != packets.Suback {
		c.t.Fatalf("SUBACK: %v (packet type %d)", err, ack.FixedHeader.Type)
	}
	return ack.ReasonCodes
}

// closed reports whether the broker closed the connection (within 5 s),
// and any packet it sent first.
func (c *client3) closed() (bool, []packets.Packet) {
	var got []packets.Packet
	for {
		pk, err := c.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, got
			}
			return true, got
		}
		got = append(got, pk)
	}
}
