package iotbroker

import (
	"bufio"
	"bytes"
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

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
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
	key, err := keyspec.ECP256.Generate()
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
	b := e.startOpen(ttl)
	e.t.Cleanup(func() { b.Close() })
	return b
}

// startOpen starts a broker that the test must close.
func (e *env) startOpen(ttl time.Duration) *Broker {
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
	key, err := keyspec.ECP256.Generate()
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
	var found string
	ok := testtool.Poll(testtool.Timeout, func() bool {
		for _, line := range strings.Split(e.logs.String(), "\n") {
			if containsAll(line, parts) {
				found = line
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no log line with %q within %v in:\n%s", parts, testtool.Timeout, e.logs)
	}
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// clientTLS is id's side of mutual TLS with the broker.
func (e *env) clientTLS(id identity) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	return &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{id.tls}}
}

// dial opens a TLS connection to the broker with id's certificate.
func (e *env) dial(id identity) (*tls.Conn, error) {
	return tls.Dial("tcp", e.broker.Addr().String(), e.clientTLS(id))
}

// connect5 connects id over MQTT 5 with clientID; configure may change
// the CONNECT.
func (e *env) connect5(id identity, clientID string, configure ...func(*paho.Connect)) (*mqtttest.Client, *paho.Connack, error) {
	e.t.Helper()
	cp := &paho.Connect{ClientID: clientID, CleanStart: true, KeepAlive: 30}
	for _, f := range configure {
		f(cp)
	}
	return mqtttest.Dial(e.t, e.broker.Addr().String(), e.clientTLS(id), cp)
}

// mustConnect5 connects id with its thing name as client ID.
func (e *env) mustConnect5(id identity) *mqtttest.Client {
	e.t.Helper()
	return mqtttest.Connect(e.t, e.broker.Addr().String(), e.clientTLS(id), id.name)
}

// client3 is a raw MQTT connection, 3.1.1 unless made by connectRaw,
// for what paho.golang (MQTT 5 only) cannot speak or see.
type client3 struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte // MQTT protocol version: 4 (3.1.1) or 5
}

// connect3 sends an MQTT 3.1.1 CONNECT and returns the CONNACK's return
// code; configure may change the CONNECT.
func (e *env) connect3(id identity, clientID string, configure ...func(*packets.ConnectParams)) (*client3, byte) {
	e.t.Helper()
	return e.connectRaw(id, clientID, 4, configure...)
}

// connectRaw sends a CONNECT of MQTT version (4 or 5) and returns the
// CONNACK's reason code; configure may change the CONNECT.
func (e *env) connectRaw(id identity, clientID string, version byte, configure ...func(*packets.ConnectParams)) (*client3, byte) {
	e.t.Helper()
	conn, err := e.dial(id)
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	c := &client3{t: e.t, conn: conn, r: bufio.NewReader(conn), version: version}
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: version,
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
	pk.ProtocolVersion = c.version
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

// read reads one packet, within testtool.Timeout.
func (c *client3) read() (packets.Packet, error) {
	c.conn.SetReadDeadline(time.Now().Add(testtool.Timeout))
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
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
	pk.ProtocolVersion = c.version
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

// closed reports whether the broker closed the connection (within
// testtool.Timeout), and any packet it sent first.
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
