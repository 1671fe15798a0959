package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqttpackets "github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"

	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/core/router"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// startPersistent starts a broker for g with its session store at path;
// the returned function closes it (as a restart would).
func (f *testFleet) startPersistent(g Group, p Persistence) (*Broker, error) {
	f.t.Helper()
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{
		Profile: tlsconf.Strict, ClientCAs: f.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil },
	})
	if err != nil {
		f.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := New(Options{Listener: ln, TLS: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Persistence: &p}, g)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := b.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.broker = b
	return b, nil
}

func (f *testFleet) mustStartPersistent(g Group, p Persistence) *Broker {
	f.t.Helper()
	b, err := f.startPersistent(g, p)
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// connectSession connects name with a persistent MQTT 5 session (expiry
// 300 s), resuming it unless clean.
func (f *testFleet) connectSession(name string, clean bool) (*client, bool) {
	f.t.Helper()
	expiry := uint32(300)
	c, ack, err := mqtttest.Dial(f.t, f.broker.Addr().String(), f.clientTLS(name), &paho.Connect{ClientID: name, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		f.t.Fatalf("connect %s: %v", name, err)
	}
	return &client{c}, ack.SessionPresent
}

// expectOnly asserts that the next messages received have the payloads
// want, in order.
func (c *client) expectOnly(t *testing.T, want ...string) {
	t.Helper()
	for _, w := range want {
		m, ok := c.TryNext(testtool.Timeout)
		if !ok {
			t.Fatalf("no message %q", w)
		}
		if m.Payload != w {
			t.Fatalf("received %s %q, want %q", m.Topic, m.Payload, w)
		}
	}
}

// Queued QoS 1 messages of an offline persistent session, its
// subscriptions and the retained messages survive a restart; on replay
// the current table decides, as it does live.
func TestPersistenceSurvivesRestart(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2", "dev3")
	p := Persistence{Path: filepath.Join(t.TempDir(), "broker", "sessions.db")}
	both := f.group(sub("s1", "dev1", "a/#", "dev2"), sub("s2", "dev1", "b/#", "dev2"), sub("s3", "dev1", "r/#", "dev3"))
	b := f.mustStartPersistent(both, p)

	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.subscribe(t, "b/#")
	dev2.Disconnect()
	dev1 := f.mustConnect("dev1")
	for _, m := range []string{"a1", "a2", "a3"} {
		dev1.publish(t, "a/x", m, false)
	}
	dev1.publish(t, "r/x", "retained", true)
	dev1.publish(t, "b/x", "b1", false)
	dev1.Disconnect()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// Same table: everything is back, in order.
	b = f.mustStartPersistent(both, p)
	dev2, present := f.connectSession("dev2", false)
	if !present {
		t.Errorf("CONNACK session present = false after restart; want the stored session")
	}
	dev2.expectOnly(t, "a1", "a2", "a3", "b1")
	dev2.Disconnect()
	dev3 := f.mustConnect("dev3")
	dev3.subscribe(t, "r/#")
	dev3.expectOnly(t, "retained")
	dev3.Disconnect()

	// Queue more, then restart with a table that no longer routes a/#.
	dev1 = f.mustConnect("dev1")
	dev1.publish(t, "a/x", "a4, no longer routed", false)
	dev1.publish(t, "b/x", "b2", false)
	dev1.Disconnect()
	b.Close()
	b = f.mustStartPersistent(f.group(sub("s2", "dev1", "b/#", "dev2")), p)
	defer b.Close()
	dev2, _ = f.connectSession("dev2", false)
	// The restored subscription a/# delivers nothing the table refuses.
	dev1 = f.mustConnect("dev1")
	dev1.publish(t, "a/x", "a5, not routed", false)
	dev1.publish(t, "b/x", "b3", false)
	dev2.expectOnly(t, "b2", "b3")
	if p, ok := dev2.TryNext(200 * time.Millisecond); ok {
		t.Errorf("dev2 received %s %q; the table no longer routes it", p.Topic, p.Payload)
	}
	// dev3 is no longer a target of r/#: the restored retained message
	// is not replayed to it.
	dev3 = f.mustConnect("dev3")
	if code := dev3.subscribe(t, "r/#"); code < 0x80 {
		t.Errorf("SUBSCRIBE r/# granted %#x to dev3, which nothing targets any more", code)
	}
}

// A device removed from the group loses its stored session at restart.
func TestPersistenceDropsRemovedDevice(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	g := f.group(sub("s1", "dev1", "a/#", "dev2"))
	b := f.mustStartPersistent(g, p)
	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.Disconnect()
	f.mustConnect("dev1").publish(t, "a/x", "queued", false)
	b.Close()

	devices := f.devices
	f.devices = f.devices[:1]
	b = f.mustStartPersistent(f.group(), p)
	if n := len(b.srv.Clients.GetAll()); n != 0 {
		t.Errorf("%d sessions restored; dev2 left the group, want 0", n)
	}
	b.Close()
	f.devices = devices
	b = f.mustStartPersistent(g, p)
	defer b.Close()
	if _, present := f.connectSession("dev2", false); present {
		t.Errorf("dev2's session came back after the restart that removed it")
	}
}

// MaxMessages bounds what is stored; what does not fit is delivered while
// the broker runs but lost on restart.
func TestPersistenceBounded(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db"), MaxMessages: 2}
	g := f.group(sub("s1", "dev1", "a/#", "dev2"))
	b := f.mustStartPersistent(g, p)
	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.Disconnect()
	dev1 := f.mustConnect("dev1")
	for _, m := range []string{"m1", "m2", "m3", "m4"} {
		dev1.publish(t, "a/x", m, false)
	}
	dev1.Disconnect()
	b.Close()
	if n := b.store.dropped.Load(); n == 0 {
		t.Errorf("store counted no message dropped past MaxMessages 2")
	}
	b = f.mustStartPersistent(g, p)
	defer b.Close()
	dev2, _ = f.connectSession("dev2", false)
	dev2.expectOnly(t, "m1", "m2")
	if p, ok := dev2.TryNext(200 * time.Millisecond); ok {
		t.Errorf("dev2 received %q; only 2 messages fit the store", p.Payload)
	}
}

// A store that cannot be read whole is refused, naming the file and what
// to do; ggcore never starts with half of it.
func TestPersistenceRefusesCorruptStore(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	g := f.group(sub("s1", "dev1", "a/#", "dev2"))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	b := f.mustStartPersistent(g, Persistence{Path: good})
	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.Disconnect()
	f.mustConnect("dev1").publish(t, "a/x", "queued", false)
	b.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	scribble := func(d []byte, off int) []byte {
		d = append([]byte(nil), d...)
		for i := off; i < off+page && i < len(d); i++ {
			d[i] ^= 0x5a
		}
		return d
	}
	hwm, root, freelist := storeMeta(t, data)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"not a store", []byte("this is not a bbolt file, it is text\n"), "unreadable"},
		// bbolt maps more than the file and reads the pages below the
		// high-water mark through the mapping: past the file's end, that
		// read was a SIGBUS (in bbolt.Open, reading the freelist page).
		{"truncated", data[:hwm/2*page], "unreadable"},
		{"truncated below the high-water mark", data[:(hwm-1)*page], "high-water mark"},
		{"truncated inside a page", data[:len(data)-page/2], "not a whole number"},
		{"zero-filled", make([]byte, len(data)), "neither meta page is valid"},
		{"zero-filled past the meta pages", append(bytes.Clone(data[:2*page]), make([]byte, len(data)-2*page)...), "unreadable"},
		{"scribbled meta pages", scribble(scribble(data, 0), page), "unreadable"},
		// Pages in use: a free page may hold anything.
		{"scribbled data pages", scribble(scribble(data, root*page), freelist*page), "unreadable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".db")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := f.startPersistent(g, Persistence{Path: path})
			if err == nil {
				b.Close()
				t.Fatalf("broker started on a corrupt store")
			}
			for _, want := range []string{path, tc.want, "move the file away"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A store another ggcore has open is refused as locked, not as unreadable:
// its file is not read while the other one writes it.
func TestPersistenceRefusesLockedStore(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	first, err := openStore(p, log)
	if err != nil {
		t.Fatal(err)
	}
	defer first.close()
	second, err := openStore(p, log)
	if err == nil {
		second.close()
		t.Fatal("a second store opened the file the first one holds")
	}
	if !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), p.Path) {
		t.Errorf("error %q does not say the file %s is locked", err, p.Path)
	}
}

// A store this ggcore opened before is opened again without a write (a
// commit fsyncs, on every start), and a bbolt file of another program or
// format is refused, named, and left as it was.
func TestPersistenceOpenWritesNothing(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	foreign := func(name string, fill func(tx *bolt.Tx) error) string {
		path := filepath.Join(dir, name+".db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ours := filepath.Join(dir, "ours.db")
	s, err := openStore(Persistence{Path: ours}, log)
	if err != nil {
		t.Fatal(err)
	}
	s.close()
	cases := []struct {
		name, path, want string
	}{
		{"opened before", ours, ""},
		{"other format", foreign("other-format", func(tx *bolt.Tx) error {
			m, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return m.Put(keyFormat, []byte("ggcore-sessions-0"))
		}), `format "ggcore-sessions-0"`},
		{"other program", foreign("other-program", func(tx *bolt.Tx) error {
			_, err := tx.CreateBucket([]byte("widgets"))
			return err
		}), "bucket widgets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			s, err := openStore(Persistence{Path: tc.path}, log)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				s.close()
			} else if err == nil {
				s.close()
				t.Fatalf("%s opened; want it refused", tc.path)
			} else if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name %s and %s", err, tc.path, tc.want)
			}
			if after, _ := os.ReadFile(tc.path); !bytes.Equal(after, before) {
				t.Errorf("opening %s changed the file", tc.path)
			}
		})
	}
}

// storeMeta reads the meta page bbolt uses (the valid one with the higher
// transaction ID; both are valid in a store that closed cleanly) of the
// bbolt file data: its high-water mark (pages in use), the root bucket's
// page and the freelist page.
func storeMeta(t *testing.T, data []byte) (hwm, root, freelist int) {
	t.Helper()
	const page, hdr = 4096, 16
	if len(data) < 2*page {
		t.Fatalf("store of %d bytes has no meta pages", len(data))
	}
	// The meta, after the page header: magic, version, page size, flags
	// (4 bytes each), root bucket (16), freelist (8), high-water mark
	// (8), transaction ID (8), checksum (8); in the machine's byte order.
	m0, m1 := data[hdr:], data[page+hdr:]
	m := m0
	if binary.NativeEndian.Uint64(m1[48:]) > binary.NativeEndian.Uint64(m0[48:]) {
		m = m1
	}
	if got := binary.NativeEndian.Uint32(m[8:]); got != page {
		t.Fatalf("store pages are %d bytes, the test assumes %d", got, page)
	}
	hwm = int(binary.NativeEndian.Uint64(m[40:]))
	if hwm <= 4 || hwm*page > len(data) {
		t.Fatalf("store of %d bytes has a high-water mark of %d pages: want 5 to %d", len(data), hwm, len(data)/page)
	}
	return hwm, int(binary.NativeEndian.Uint64(m[16:])), int(binary.NativeEndian.Uint64(m[32:]))
}

// However a store file is damaged, opening it refuses it or opens it:
// it never kills the process (bbolt maps the file, and a read past its
// end or outside the mapping is a fault, not a panic). The damage is a
// few bytes overwritten at random, as a failing disk or a bug would.
func TestPersistenceCorruptStoreNeverCrashes(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	g := f.group(sub("s1", "dev1", "a/#", "dev2"))
	dir := t.TempDir()
	good := filepath.Join(dir, "good.db")
	b := f.mustStartPersistent(g, Persistence{Path: good})
	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.Disconnect()
	dev1 := f.mustConnect("dev1")
	for i := range 20 {
		dev1.publish(t, "a/x", strings.Repeat(fmt.Sprint(i), 300), false)
	}
	dev1.Disconnect()
	b.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	// The pages in use: the rest of the file is free.
	hwm, _, _ := storeMeta(t, data)
	used := hwm * 4096
	rng := rand.New(rand.NewPCG(1, 2))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	refused := 0
	for i := range 200 {
		d := bytes.Clone(data)
		for range 1 + rng.IntN(3) {
			off := rng.IntN(used)
			for j := range 1 + rng.IntN(8) {
				if off+j < len(d) {
					d[off+j] = byte(rng.Uint32())
				}
			}
		}
		path := filepath.Join(dir, fmt.Sprintf("damaged-%d.db", i))
		if err := os.WriteFile(path, d, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := openStore(Persistence{Path: path}, log)
		if err != nil {
			refused++
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "move") {
				t.Errorf("damage %d: error %q does not name the file and what to do", i, err)
			}
			continue
		}
		if err := s.close(); err != nil {
			t.Errorf("damage %d: close: %v", i, err)
		}
	}
	if refused == 0 {
		t.Errorf("no damaged store was refused: the damage missed the pages in use")
	}
}

// A publish acknowledged just before a crash may be stored only as its
// pending record: on restart it reaches the stored sessions that do not
// hold it yet, once.
func TestPersistencePendingRedelivered(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2", "dev3")
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	g := f.group(sub("s1", "dev1", "a/#", "dev2"), sub("s2", "dev1", "a/#", "dev3"))
	b := f.mustStartPersistent(g, p)
	for _, d := range []string{"dev2", "dev3"} {
		c, _ := f.connectSession(d, true)
		c.subscribe(t, "a/#")
		c.Disconnect()
	}
	// dev3 already holds the message (its copy was stored), dev2 does not.
	f.mustConnect("dev1").publish(t, "a/x", "held by dev3", false)
	b.Close()
	db, err := bolt.Open(p.Path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		var held storedMessage
		c := tx.Bucket(bucketInflight).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var m storedMessage
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			if m.Client == "dev2" {
				if err := c.Delete(); err != nil {
					return err
				}
			} else {
				held = m
			}
		}
		held.Client, held.PacketID = "", 0
		v, _ := json.Marshal(held)
		return tx.Bucket(bucketPending).Put(binary.BigEndian.AppendUint64(nil, 7), v)
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b = f.mustStartPersistent(g, p)
	defer b.Close()
	for _, d := range []string{"dev2", "dev3"} {
		c, _ := f.connectSession(d, false)
		c.expectOnly(t, "held by dev3")
		if m, ok := c.TryNext(200 * time.Millisecond); ok {
			t.Errorf("%s received %q a second time", d, m.Payload)
		}
	}
}

// Messages waiting in a connected subscriber's queue (queue.go stores
// them with storeQueued) come back after a restart, after the session's
// inflight messages, in order; those it unstored do not.
func TestPersistenceQueuedRestored(t *testing.T) {
	f := newTestFleet(t, "dev1", "dev2")
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	g := f.group(sub("s1", "dev1", "a/#", "dev2"))
	b := f.mustStartPersistent(g, p)
	dev2, _ := f.connectSession("dev2", true)
	dev2.subscribe(t, "a/#")
	dev2.Disconnect()
	dev1 := f.mustConnect("dev1")
	dev1.publish(t, "a/x", "inflight", false)
	msg := func(payload string) mqttpackets.Packet {
		return mqttpackets.Packet{FixedHeader: mqttpackets.FixedHeader{Type: mqttpackets.Publish, Qos: 1}, TopicName: "a/x",
			Payload: []byte(payload), Origin: "dev1", Created: time.Now().Unix()}
	}
	k1 := b.storeQueued("dev2", msg("queued 1"), 1)
	kGone := b.storeQueued("dev2", msg("sent before the crash"), 1)
	k2 := b.storeQueued("dev2", msg("queued 2"), 1)
	if k1 == 0 || kGone == 0 || k2 == 0 {
		t.Fatalf("storeQueued did not store for a stored session")
	}
	if k := b.storeQueued("dev1", msg("clean session"), 1); k != 0 {
		t.Errorf("storeQueued stored a message for dev1, whose session is clean")
	}
	b.unstoreQueued("dev2", kGone)
	b.Close()
	b = f.mustStartPersistent(g, p)
	defer b.Close()
	dev2, _ = f.connectSession("dev2", false)
	dev2.expectOnly(t, "inflight", "queued 1", "queued 2")
	if m, ok := dev2.TryNext(200 * time.Millisecond); ok {
		t.Errorf("dev2 received %q; want nothing more", m.Payload)
	}
}

// BenchmarkPersistentQueue: QoS 1 publishes (each waits for its PUBACK)
// from publishers devices to a stored session that is offline: with a
// store, each is acknowledged once its pending record is fsynced, and
// concurrent publishers share fsyncs. "memory" is the same broker without
// a store.
func BenchmarkPersistentQueue(b *testing.B) {
	for _, store := range []bool{false, true} {
		for _, publishers := range []int{1, 8} {
			name := fmt.Sprintf("memory/publishers=%d", publishers)
			if store {
				name = fmt.Sprintf("bbolt/publishers=%d", publishers)
			}
			b.Run(name, func(b *testing.B) { benchPersistentQueue(b, store, publishers) })
		}
	}
}

func benchPersistentQueue(b *testing.B, store bool, publishers int) {
	ca, err := pki.NewCA("bench CA", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	f := &testFleet{pool: x509.NewCertPool(), certs: map[string]tls.Certificate{}}
	f.pool.AddCert(ca.Cert)
	issue := func(cn string, usage pki.Usage) tls.Certificate {
		key, err := keyspec.ECP256.Generate()
		if err != nil {
			b.Fatal(err)
		}
		cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: cn, DNSNames: []string{"localhost"}, Usage: usage, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			b.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
	}
	f.server = issue("core", pki.ServerAuth)
	var routes []router.Subscription
	names := []string{"sub"}
	for i := range publishers {
		names = append(names, fmt.Sprintf("pub%d", i))
		routes = append(routes, sub(fmt.Sprintf("s%d", i), fmt.Sprintf("pub%d", i), "a/#", "sub"))
	}
	for _, n := range names {
		f.certs[n] = issue(n, pki.ClientAuth)
		f.devices = append(f.devices, Thing{Name: n, ARN: arnPrefix + n, CertificateID: pki.CertificateID(f.certs[n].Certificate[0])})
	}
	table, err := router.New(routes)
	if err != nil {
		b.Fatal(err)
	}
	g := Group{ID: "bench", Devices: f.devices, Table: table}
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{Profile: tlsconf.Strict, ClientCAs: f.pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &f.server, nil }})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	o := Options{Listener: ln, TLS: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if store {
		o.Persistence = &Persistence{Path: filepath.Join(b.TempDir(), "sessions.db"), MaxMessages: 1 << 30, MaxBytes: 1 << 40}
	}
	br, err := New(o, g)
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Start(); err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	dial := func(name string, clean bool) *mqtttest.Client {
		expiry := uint32(300)
		if clean {
			expiry = 0
		}
		c, _, err := mqtttest.Dial(b, ln.Addr().String(), f.clientTLS(name), &paho.Connect{ClientID: name, CleanStart: true, KeepAlive: 60,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	s := dial("sub", false)
	s.MustSubscribe(b, 1, "a/#")
	s.Disconnect()
	pubs := make([]*mqtttest.Client, publishers)
	for i := range pubs {
		pubs[i] = dial(fmt.Sprintf("pub%d", i), true)
	}
	ctx := context.Background()
	payload := make([]byte, 256)
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, p := range pubs {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if _, err := p.Paho.Publish(ctx, &paho.Publish{Topic: "a/x", QoS: 1, Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// A persistent subscriber that is connected but holds its
// acknowledgements has, beyond its window, messages waiting in its queue;
// when it then drops off, more wait there for its return. Every one was
// acknowledged to its publisher, so a crash must lose none: the store as
// committed when the last PUBACK went out (what a power cut leaves) gives
// the resumed session every message, in order per publisher, QoS 2 once.
func TestPersistenceQueueOfConnectedSessionSurvivesCrash(t *testing.T) {
	f := newTestFleet(t, "pub1", "pub2", "sub")
	p := Persistence{Path: filepath.Join(t.TempDir(), "sessions.db")}
	g := f.group(sub("s1", "pub1", "a/#", "sub"), sub("s2", "pub2", "a/#", "sub"))
	b := f.mustStartPersistent(g, p)
	expiry, window := uint32(300), uint16(4)
	holder, _, err := mqtttest.Dial(t, b.Addr().String(), f.clientTLS("sub"), &paho.Connect{ClientID: "sub", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &window}})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	holder.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) { <-release; return true, nil })
	t.Cleanup(func() { close(release) })
	holder.MustSubscribe(t, 2, "a/#")
	pubs := []*mqtttest.Client{f.mustConnect("pub1").Client, f.mustConnect("pub2").Client}
	var want [2][]string
	publish := func(phase string, n int) {
		for i := range n {
			for j, pc := range pubs {
				m := fmt.Sprintf("pub%d %s %03d", j+1, phase, i)
				pc.MustPublish(t, "a/x", m, byte(1+i%2), false)
				want[j] = append(want[j], m)
			}
		}
	}
	publish("online", 30)
	waitFor(t, testtool.Timeout, "the held messages queued", func() bool { return b.Stats().QueuedBytes > 0 })
	holder.Drop()
	waitFor(t, testtool.Timeout, "the subscriber gone", func() bool { return b.Stats().Clients == 2 })
	publish("offline", 10)

	crash := filepath.Join(t.TempDir(), "crashed.db")
	if err := b.store.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(crash, 0o600) }); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b = f.mustStartPersistent(g, Persistence{Path: crash})
	defer b.Close()
	resumed, present := f.connectSession("sub", false)
	if !present {
		t.Fatalf("CONNACK session present = false after the crash; want the stored session")
	}
	counts := map[string]int{}
	var got [2][]string
	for total := len(want[0]) + len(want[1]); len(got[0])+len(got[1]) < total; {
		m, ok := resumed.TryNext(testtool.Timeout)
		if !ok {
			t.Fatalf("after the crash the subscriber received %d of %d messages: %q", len(got[0])+len(got[1]), total, got)
		}
		if counts[m.Payload]++; counts[m.Payload] == 1 {
			j := int(m.Payload[3] - '1')
			got[j] = append(got[j], m.Payload)
		} else if m.QoS == 2 {
			t.Errorf("QoS 2 message %q received twice", m.Payload)
		}
	}
	for j := range want {
		if strings.Join(got[j], ",") != strings.Join(want[j], ",") {
			t.Errorf("pub%d's messages arrived as\n%q\nwant, in the order published,\n%q", j+1, got[j], want[j])
		}
	}
}
