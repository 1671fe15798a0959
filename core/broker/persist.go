package broker

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/ggcore/ggcore/internal/boltcheck"
)

// Persistence keeps persistent sessions (MQTT 3.1.1 clean session false,
// MQTT 5 session expiry > 0), their queued QoS 1/2 messages and the
// retained messages in one bbolt file, so that they survive a restart and
// a power cut. See persist.go for what is written when.
type Persistence struct {
	// Path is the store file; its directory is created.
	Path string
	// MaxBytes bounds the stored messages (queued and retained), counted
	// as the size of their records. Past it, a new message is still
	// delivered while the core runs but is not stored: counted and logged.
	MaxBytes int64
	// MaxMessages bounds the number of stored messages the same way.
	MaxMessages int64

	// opened is the store Open opened ahead of New; New takes it over.
	opened *sessionStore
}

// Open opens the store ahead of New, which then takes it over instead of
// opening it: a caller can overlap the open (tens of milliseconds on an
// emulated machine) with other work. Discard closes a store New did not
// take over.
func (p *Persistence) Open(log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	s, err := openStore(*p, log)
	p.opened = s
	return err
}

// Discard closes the store Open opened, unless New took it over.
func (p *Persistence) Discard() error {
	s := p.opened
	p.opened = nil
	if s == nil {
		return nil
	}
	return s.close()
}

// Defaults of Persistence's bounds.
const (
	DefaultPersistMaxBytes    = 64 << 20
	DefaultPersistMaxMessages = 100_000
)

// storeFormat is the value of the format key: a store of another format
// is refused, never guessed at.
const storeFormat = "ggcore-sessions-1"

// Buckets of the store. Keys: clients by client ID; subscriptions by
// client ID, NUL, filter; inflight by client ID, NUL, packet ID (2 bytes
// big endian); queued (messages in a connected subscriber's queue, not
// yet sent: queue.go) by client ID, NUL, sequence (8 bytes big endian);
// retained by topic; pending by sequence.
var (
	bucketMeta     = []byte("meta")
	bucketClients  = []byte("clients")
	bucketSubs     = []byte("subscriptions")
	bucketInflight = []byte("inflight")
	bucketRetained = []byte("retained")
	bucketPending  = []byte("pending")
	bucketQueued   = []byte("queued")
	keyFormat      = []byte("format")
)

// The write path. mochi acknowledges a QoS 1/2 PUBLISH before it queues
// the message for its subscribers, so a message stored only when it is
// queued could be lost by a crash between the two. The store closes that
// gap with a pending record: when a QoS 1/2 publish may reach a persistent
// session, it is written (and fsynced) before mochi sends PUBACK/PUBREC,
// and deleted once mochi has queued it for every subscriber. All writes go
// through one ordered queue committed in batches (one fsync per batch), so
// a store after a crash holds a prefix of them: a pending record whose
// queued copies are missing is delivered again on restart, to the
// sessions that do not already hold it. Subscriptions and retained QoS 1/2
// messages are also written before their acknowledgement; queued copies,
// acknowledgements from subscribers and disconnect times are written
// without waiting.

// storedClient is a persistent session.
type storedClient struct {
	storage.Client
	// Certificate is the certificate ID the session's device presented.
	Certificate string `json:"certificate"`
	// Disconnected is when the device disconnected (unix seconds); 0
	// while it was connected.
	Disconnected int64 `json:"disconnected,omitempty"`
}

// storedMessage is a queued, retained or pending message.
type storedMessage struct {
	storage.Message
	Expiry  int64 `json:"expiry,omitempty"`
	Version byte  `json:"version,omitempty"`
}

func toStored(clientID string, pk packets.Packet) storedMessage {
	props := pk.Properties.Copy(false)
	return storedMessage{
		Message: storage.Message{
			Client:      clientID,
			Origin:      pk.Origin,
			FixedHeader: pk.FixedHeader,
			TopicName:   pk.TopicName,
			Payload:     pk.Payload,
			Created:     pk.Created,
			PacketID:    pk.PacketID,
			Properties: storage.MessageProperties{
				PayloadFormat:          props.PayloadFormat,
				PayloadFormatFlag:      props.PayloadFormatFlag,
				MessageExpiryInterval:  props.MessageExpiryInterval,
				ContentType:            props.ContentType,
				ResponseTopic:          props.ResponseTopic,
				CorrelationData:        props.CorrelationData,
				SubscriptionIdentifier: props.SubscriptionIdentifier,
				User:                   props.User,
			},
		},
		Expiry:  pk.Expiry,
		Version: pk.ProtocolVersion,
	}
}

func (m *storedMessage) packet() packets.Packet {
	pk := m.ToPacket()
	pk.Expiry = m.Expiry
	pk.ProtocolVersion = m.Version
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	return pk
}

func sessionKey(clientID string, rest []byte) []byte {
	k := make([]byte, 0, len(clientID)+1+len(rest))
	k = append(k, clientID...)
	k = append(k, 0)
	return append(k, rest...)
}

func inflightKey(clientID string, id uint16) []byte {
	return sessionKey(clientID, binary.BigEndian.AppendUint16(nil, id))
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// op is one write. val nil deletes key; prefix deletes every key that
// starts with key.
type op struct {
	bucket []byte
	key    []byte
	val    []byte
	prefix bool
	// counted puts are bound by MaxBytes and MaxMessages.
	counted bool
}

type batch struct {
	ops  []op
	done chan error // nil: nobody waits
}

// sessionStore is the open store and its writer.
type sessionStore struct {
	path   string
	db     *bolt.DB
	log    *slog.Logger
	limits Persistence

	queue chan batch
	// mu guards closed against sends on a closed queue.
	mu      sync.RWMutex
	closed  bool
	stopped chan struct{}

	// Owned by the writer goroutine (set before it starts).
	count, bytes int64

	dropped atomic.Int64 // messages not stored: store full
	failed  atomic.Int64 // batches that failed to commit

	// seq numbers pending records; initialised from the store.
	seq atomic.Uint64

	// sessions are the client IDs with a stored session: writes for
	// other clients are skipped without touching the queue.
	sessions  sync.Map // string -> struct{}
	nSessions atomic.Int64
	// certs are the certificate IDs of restored sessions, which have no
	// connection to read them from.
	certs sync.Map // string -> string
	// pending maps a publishing client to the pending record of the
	// publish being processed (set in OnPublish, used in OnPublished).
	pending sync.Map // *mqtt.Client -> uint64

	loaded *loadedState
}

type queuedRecord struct {
	seq uint64
	m   storedMessage
}

// loadedState is everything read at open, applied by restore.
type loadedState struct {
	clients  []storedClient
	subs     []storage.Subscription
	inflight []storedMessage
	queued   []queuedRecord
	retained []storedMessage
	pending  map[uint64]storedMessage
}

// openStore opens (creating if need be) the store at p.Path and reads all
// of it. A store that cannot be read whole is refused: ggcore does not
// start with half its sessions.
func openStore(p Persistence, log *slog.Logger) (_ *sessionStore, err error) {
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultPersistMaxBytes
	}
	if p.MaxMessages <= 0 {
		p.MaxMessages = DefaultPersistMaxMessages
	}
	if err := os.MkdirAll(filepath.Dir(p.Path), 0o700); err != nil {
		return nil, fmt.Errorf("broker: session store: %w", err)
	}
	refuse := func(cause any) error {
		return fmt.Errorf("broker: session store %s is unreadable (%v): ggcore will not start with part of its "+
			"sessions; move the file away to start without the stored sessions, queued messages and retained messages", p.Path, cause)
	}
	locked := fmt.Errorf("broker: session store %s is locked by another process (another ggcore on this write directory?)", p.Path)
	// bbolt maps the file and follows the page numbers and offsets in it
	// unchecked: in a truncated or scribbled file, a read past its end
	// raises SIGBUS (or SIGSEGV), which kills the process rather than
	// panicking. boltcheck reads, with plain reads, everything bbolt will
	// follow (also in Tx.Check's own goroutine, which SetPanicOnFault
	// below does not cover), and refuses such a file first.
	if err := boltcheck.File(p.Path, 2*time.Second); errors.Is(err, boltcheck.ErrLocked) {
		return nil, locked
	} else if err != nil {
		return nil, refuse(err)
	}
	// Should boltcheck miss something, a fault in this goroutine (Open and
	// load) becomes a panic, refused below like bbolt's own panics on
	// corrupt pages.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	var db *bolt.DB
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		db, err = bolt.Open(p.Path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	}()
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, locked
	}
	if err != nil {
		return nil, refuse(err)
	}
	s := &sessionStore{path: p.Path, db: db, log: log, limits: p,
		queue: make(chan batch, 1024), stopped: make(chan struct{})}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = refuse(r)
			}
		}()
		err = s.load()
	}()
	if err != nil {
		var fe formatError
		if errors.As(err, &fe) {
			return nil, fmt.Errorf("broker: session store %s: %w", p.Path, err)
		}
		return nil, refuse(err)
	}
	go s.write()
	return s, nil
}

// storeBuckets are the buckets of a store besides bucketMeta.
var storeBuckets = [][]byte{bucketClients, bucketSubs, bucketInflight, bucketQueued, bucketRetained, bucketPending}

// hasLayout tells whether tx's store has this format's meta bucket and
// every bucket; a store of another format is refused.
func hasLayout(tx *bolt.Tx) (bool, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return false, formatError{got: "none, bucket " + string(k)}
		}
		return false, nil
	}
	if got := string(meta.Get(keyFormat)); got != storeFormat {
		return false, formatError{got: got}
	}
	for _, b := range storeBuckets {
		if tx.Bucket(b) == nil {
			return false, nil
		}
	}
	return true, nil
}

// createLayout writes what hasLayout found missing.
func createLayout(tx *bolt.Tx) error {
	if _, err := hasLayout(tx); err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keyFormat, []byte(storeFormat)); err != nil {
		return err
	}
	for _, b := range storeBuckets {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

type formatError struct{ got string }

func (e formatError) Error() string {
	return fmt.Sprintf("format %q is not %q: it was written by another program or version; move it away to start afresh", e.got, storeFormat)
}

// load checks the file page by page, then decodes every record.
func (s *sessionStore) load() error {
	if err := s.db.View(func(tx *bolt.Tx) error {
		fi, err := os.Stat(s.path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			return fmt.Errorf("truncated: %d bytes, its pages need %d", fi.Size(), tx.Size())
		}
		// Check walks the pages in a goroutine of its own: read all it
		// reports, so that it has ended before the transaction does.
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 5 {
				errs = append(errs, e)
			}
		}
		return errors.Join(errs...)
	}); err != nil {
		return fmt.Errorf("consistency check: %w", err)
	}
	// A store that has its format and every bucket is only read: a write
	// transaction commits with an fsync even when it changes nothing,
	// tens of milliseconds on the start's path of an emulated gateway.
	complete := false
	if err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		complete, err = hasLayout(tx)
		return err
	}); err != nil {
		return err
	}
	if !complete {
		if err := s.db.Update(createLayout); err != nil {
			return err
		}
	}
	l := &loadedState{pending: map[uint64]storedMessage{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketClients).ForEach(func(k, v []byte) error {
			var c storedClient
			if err := json.Unmarshal(v, &c); err != nil || c.ID != string(k) {
				return fmt.Errorf("client record %q: %v", k, err)
			}
			l.clients = append(l.clients, c)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSubs).ForEach(func(k, v []byte) error {
			var sub storage.Subscription
			if err := json.Unmarshal(v, &sub); err != nil || string(sessionKey(sub.Client, []byte(sub.Filter))) != string(k) {
				return fmt.Errorf("subscription record %q: %v", k, err)
			}
			l.subs = append(l.subs, sub)
			return nil
		}); err != nil {
			return err
		}
		msgs := func(bucket []byte, what string, each func(k []byte, m storedMessage) error) error {
			return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
				var m storedMessage
				if err := json.Unmarshal(v, &m); err != nil {
					return fmt.Errorf("%s record %q: %v", what, k, err)
				}
				if string(bucket) != string(bucketPending) {
					s.count++
					s.bytes += int64(len(v))
				}
				return each(k, m)
			})
		}
		if err := msgs(bucketInflight, "queued message", func(k []byte, m storedMessage) error {
			if string(inflightKey(m.Client, m.PacketID)) != string(k) {
				return fmt.Errorf("queued message record %q: key does not match its content", k)
			}
			l.inflight = append(l.inflight, m)
			return nil
		}); err != nil {
			return err
		}
		if err := msgs(bucketQueued, "queued message", func(k []byte, m storedMessage) error {
			if len(k) < 9 || string(sessionKey(m.Client, k[len(k)-8:])) != string(k) {
				return fmt.Errorf("queued message record %q: key does not match its content", k)
			}
			seq := binary.BigEndian.Uint64(k[len(k)-8:])
			l.queued = append(l.queued, queuedRecord{seq: seq, m: m})
			if seq > s.seq.Load() {
				s.seq.Store(seq)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := msgs(bucketRetained, "retained message", func(k []byte, m storedMessage) error {
			if m.TopicName != string(k) {
				return fmt.Errorf("retained message record %q: key does not match its topic", k)
			}
			l.retained = append(l.retained, m)
			return nil
		}); err != nil {
			return err
		}
		return msgs(bucketPending, "pending message", func(k []byte, m storedMessage) error {
			if len(k) != 8 {
				return fmt.Errorf("pending message record %q: bad key", k)
			}
			seq := binary.BigEndian.Uint64(k)
			l.pending[seq] = m
			if seq > s.seq.Load() {
				s.seq.Store(seq)
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	s.loaded = l
	return nil
}

// write is the writer goroutine: it commits what is queued in batches,
// one transaction (one fsync) each, and ends when the queue is closed.
func (s *sessionStore) write() {
	defer close(s.stopped)
	for first := range s.queue {
		batches := []batch{first}
	drain:
		for len(batches) < 512 {
			select {
			case b, ok := <-s.queue:
				if !ok {
					break drain
				}
				batches = append(batches, b)
			default:
				break drain
			}
		}
		err := s.commit(batches)
		if err != nil {
			if s.failed.Add(1)%100 == 1 {
				s.log.Error("session store: write failed: sessions and queued messages since the last good write will not survive a restart",
					"path", s.path, "error", err)
			}
		}
		for _, b := range batches {
			if b.done != nil {
				b.done <- err
			}
		}
	}
}

func (s *sessionStore) commit(batches []batch) error {
	count, size := s.count, s.bytes
	var dropped int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range batches {
			for _, o := range b.ops {
				bk := tx.Bucket(o.bucket)
				// Pending records live for one publish: not counted.
				counted := string(o.bucket) == string(bucketInflight) || string(o.bucket) == string(bucketRetained) ||
					string(o.bucket) == string(bucketQueued)
				del := func(k, old []byte) error {
					if old == nil {
						return nil
					}
					if counted {
						count--
						size -= int64(len(old))
					}
					return bk.Delete(k)
				}
				switch {
				case o.prefix:
					c := bk.Cursor()
					for k, v := c.Seek(o.key); k != nil && len(k) >= len(o.key) && string(k[:len(o.key)]) == string(o.key); k, v = c.Seek(o.key) {
						if err := del(k, v); err != nil {
							return err
						}
					}
				case o.val == nil:
					if err := del(o.key, bk.Get(o.key)); err != nil {
						return err
					}
				default:
					old := bk.Get(o.key)
					if counted {
						n, sz := count, size+int64(len(o.val))
						if old == nil {
							n++
						} else {
							sz -= int64(len(old))
						}
						if o.counted && (n > s.limits.MaxMessages || sz > s.limits.MaxBytes) {
							dropped++
							continue
						}
						count, size = n, sz
					}
					if err := bk.Put(o.key, o.val); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.count, s.bytes = count, size
	if dropped > 0 {
		if n := s.dropped.Add(dropped); n == dropped || n/1000 != (n-dropped)/1000 {
			s.log.Warn("session store full: messages kept in memory only, they will not survive a restart",
				"path", s.path, "not_stored", n, "max_messages", s.limits.MaxMessages, "max_bytes", s.limits.MaxBytes)
		}
	}
	return nil
}

// submit queues ops; with wait it returns once they are committed.
func (s *sessionStore) submit(wait bool, ops ...op) error {
	b := batch{ops: ops}
	if wait {
		b.done = make(chan error, 1)
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errors.New("session store closed")
	}
	s.queue <- b
	s.mu.RUnlock()
	if !wait {
		return nil
	}
	return <-b.done
}

// close commits what is queued and closes the file.
func (s *sessionStore) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.queue)
	s.mu.Unlock()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("broker: close session store %s: %w", s.path, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only channels, functions and cycles fail; the records have none.
		panic(fmt.Sprintf("broker: encode record: %v", err))
	}
	return b
}

func (s *sessionStore) has(clientID string) bool {
	_, ok := s.sessions.Load(clientID)
	return ok
}

// forgetOps deletes a whole session.
func forgetOps(clientID string) []op {
	return []op{
		{bucket: bucketClients, key: []byte(clientID)},
		{bucket: bucketSubs, key: sessionKey(clientID, nil), prefix: true},
		{bucket: bucketInflight, key: sessionKey(clientID, nil), prefix: true},
		{bucket: bucketQueued, key: sessionKey(clientID, nil), prefix: true},
	}
}

func (s *sessionStore) add(clientID string) {
	if _, loaded := s.sessions.LoadOrStore(clientID, struct{}{}); !loaded {
		s.nSessions.Add(1)
	}
}

func (s *sessionStore) forget(clientID string) {
	if _, ok := s.sessions.LoadAndDelete(clientID); ok {
		s.nSessions.Add(-1)
		s.certs.Delete(clientID)
		_ = s.submit(false, forgetOps(clientID)...)
	}
}

// persistHook writes the broker's state to the store as mochi changes it.
type persistHook struct {
	mqtt.HookBase
	b *Broker
	s *sessionStore
}

func (h *persistHook) ID() string { return "ggcore-persist" }

func (h *persistHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnClientExpired, mqtt.OnPublish, mqtt.OnPublished:
		return true
	}
	return false
}

func (h *persistHook) clientRecord(cl *mqtt.Client, disconnected int64) []byte {
	props := cl.Properties.Props.Copy(false)
	return mustJSON(storedClient{
		Client: storage.Client{
			ID:              cl.ID,
			T:               storage.ClientKey,
			Listener:        cl.Net.Listener,
			Clean:           cl.Properties.Clean,
			ProtocolVersion: cl.Properties.ProtocolVersion,
			Properties: storage.ClientProperties{
				SessionExpiryInterval:     props.SessionExpiryInterval,
				SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
				ReceiveMaximum:            props.ReceiveMaximum,
				MaximumPacketSize:         props.MaximumPacketSize,
			},
		},
		Certificate:  h.b.sessionCertificate(cl),
		Disconnected: disconnected,
	})
}

// OnSessionEstablished stores a persistent session, and forgets a stored
// one that a clean connection replaced.
func (h *persistHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !persistent(cl) {
		h.s.forget(cl.ID)
		return
	}
	var ops []op
	if pk.Connect.Clean {
		ops = forgetOps(cl.ID) // a clean start ends the stored session first
	}
	h.s.add(cl.ID)
	h.s.certs.Delete(cl.ID)
	_ = h.s.submit(false, append(ops, op{bucket: bucketClients, key: []byte(cl.ID), val: h.clientRecord(cl, 0)})...)
}

// OnDisconnect forgets a session that ends with its connection and
// records when a persistent one went offline.
func (h *persistHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	// A publish whose acknowledgement could not be written is neither
	// acknowledged nor delivered: its pending record goes.
	h.OnPublished(cl, packets.Packet{})
	if cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return
	}
	if expire {
		h.s.forget(cl.ID)
		return
	}
	if h.s.has(cl.ID) {
		_ = h.s.submit(false, op{bucket: bucketClients, key: []byte(cl.ID), val: h.clientRecord(cl, time.Now().Unix())})
	}
}

func (h *persistHook) OnClientExpired(cl *mqtt.Client) { h.s.forget(cl.ID) }

// OnSubscribed stores the granted subscriptions before the SUBACK goes out.
func (h *persistHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if !h.s.has(cl.ID) {
		return
	}
	var ops []op
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] >= packets.ErrUnspecifiedError.Code {
			continue
		}
		sub := storage.Subscription{
			ID: cl.ID + ":" + f.Filter, T: storage.SubscriptionKey, Client: cl.ID, Filter: f.Filter, Qos: codes[i],
			Identifier: f.Identifier, NoLocal: f.NoLocal, RetainHandling: f.RetainHandling, RetainAsPublished: f.RetainAsPublished,
		}
		ops = append(ops, op{bucket: bucketSubs, key: sessionKey(cl.ID, []byte(f.Filter)), val: mustJSON(sub)})
	}
	if len(ops) > 0 {
		_ = h.s.submit(true, ops...)
	}
}

func (h *persistHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) {
	if !h.s.has(cl.ID) || cl.IsTakenOver() {
		return
	}
	ops := make([]op, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		ops = append(ops, op{bucket: bucketSubs, key: sessionKey(cl.ID, []byte(f.Filter))})
	}
	_ = h.s.submit(false, ops...)
}

// OnQosPublish stores a message queued for a persistent session (and the
// QoS 2 handshake states).
func (h *persistHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	// A PUBACK to a client's QoS 1 publish is an inflight entry only while
	// mochi writes it: nothing to keep.
	if pk.FixedHeader.Type == packets.Puback || !h.s.has(cl.ID) {
		return
	}
	_ = h.s.submit(false, op{bucket: bucketInflight, key: inflightKey(cl.ID, pk.PacketID),
		val: mustJSON(toStored(cl.ID, pk)), counted: pk.FixedHeader.Type == packets.Publish})
}

func (h *persistHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	// mochi's own PUBACK (it sets Created; a client's packets have none)
	// completes a client's QoS 1 publish, of which nothing was stored; the
	// record under its identifier, if any, is the broker's own message.
	if pk.FixedHeader.Type == packets.Puback && pk.Created != 0 {
		return
	}
	if h.s.has(cl.ID) {
		_ = h.s.submit(false, op{bucket: bucketInflight, key: inflightKey(cl.ID, pk.PacketID)})
	}
}

// OnQosDropped forgets a dropped message, except when mochi drops the
// queue of a session that a reconnection took over with its messages.
func (h *persistHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	h.OnQosComplete(cl, pk)
}

// OnRetainMessage stores or deletes a retained message, before a QoS 1/2
// publisher gets its acknowledgement.
func (h *persistHook) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	if r == -1 {
		_ = h.s.submit(false, op{bucket: bucketRetained, key: []byte(pk.TopicName)})
		return
	}
	_ = h.s.submit(pk.FixedHeader.Qos > 0, op{bucket: bucketRetained, key: []byte(pk.TopicName),
		val: mustJSON(toStored("", pk)), counted: true})
}

func (h *persistHook) OnRetainedExpired(topic string) {
	_ = h.s.submit(false, op{bucket: bucketRetained, key: []byte(topic)})
}

// OnPublish writes a pending record for a QoS 1/2 publish that a
// persistent session subscribes to, before mochi acknowledges it.
func (h *persistHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || !h.reachesStored(pk) {
		return pk, nil
	}
	seq := h.s.seq.Add(1)
	m := toStored("", pk)
	m.PacketID = 0
	if err := h.s.submit(true, op{bucket: bucketPending, key: binary.BigEndian.AppendUint64(nil, seq),
		val: mustJSON(m)}); err != nil {
		// The writer logs failed writes (rate-limited).
		h.b.log.Debug("session store: message not stored before its acknowledgement", "client", cl.ID, "topic", pk.TopicName, "error", err)
	}
	h.s.pending.Store(cl, seq)
	return pk, nil
}

// OnPublished deletes the pending record: the message is now queued for
// every subscriber, and stored for the persistent ones.
//
// A QoS 1 message from the cloud (the inline client) has no pending
// record: FromCloud returns, and the bridge acknowledges it upstream, once
// the copies queued for stored sessions are committed.
func (h *persistHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if v, ok := h.s.pending.LoadAndDelete(cl); ok {
		_ = h.s.submit(false, op{bucket: bucketPending, key: binary.BigEndian.AppendUint64(nil, v.(uint64))})
	} else if cl.Net.Inline && pk.FixedHeader.Qos > 0 && h.s.nSessions.Load() > 0 {
		_ = h.s.submit(true)
	}
}

// reachesStored reports whether a stored session subscribes to pk's topic.
func (h *persistHook) reachesStored(pk packets.Packet) bool {
	if h.s.nSessions.Load() == 0 {
		return false
	}
	for id := range h.b.srv.Topics.Subscribers(pk.TopicName).Subscriptions {
		if h.s.has(id) {
			return true
		}
	}
	return false
}

// sessionCertificate is the certificate ID of cl's device: from its
// connection, or, for a session restored from the store that has not
// reconnected, from the store.
func (b *Broker) sessionCertificate(cl *mqtt.Client) string {
	if id := certificateID(cl); id != "" {
		return id
	}
	if b.store != nil {
		if v, ok := b.store.certs.Load(cl.ID); ok {
			return v.(string)
		}
	}
	return ""
}

// forgetSession deletes a removed device's stored session.
func (b *Broker) forgetSession(clientID string) {
	if b.store != nil {
		b.store.forget(clientID)
	}
}

// storeQueued stores a message put in the queue of clientID (queue.go)
// at qos, when clientID's session is stored; it returns the record's key
// for unstoreQueued, or 0 when nothing was stored. It does not wait: the
// publish's pending record covers the message until the write commits.
func (b *Broker) storeQueued(clientID string, pk packets.Packet, qos byte) uint64 {
	e := queued{msg: &pk, qos: qos}
	rec := b.queuedRecord(clientID, &e)
	if rec == nil {
		return 0
	}
	b.submitQueued(*rec)
	return e.key
}

// queuedRecord encodes the record of queue entry e for clientID and sets
// e.key, when clientID's session is stored and e is QoS 1/2; nil
// otherwise, at the cost of one map lookup. The record keeps what the
// entry adds to its shared message: its QoS, subscription identifiers and
// retain flag as the subscriber receives it.
func (b *Broker) queuedRecord(clientID string, e *queued) *op {
	if b.store == nil || e.qos == 0 || !b.store.has(clientID) {
		return nil
	}
	e.key = b.store.seq.Add(1)
	m := toStored(clientID, *e.msg)
	m.FixedHeader.Qos = e.qos
	m.FixedHeader.Retain = e.fwdRetained || (e.retainAsPublished && e.msg.FixedHeader.Retain)
	m.Properties.SubscriptionIdentifier = e.ids
	m.PacketID = 0
	return &op{bucket: bucketQueued, key: queuedKey(clientID, e.key), val: mustJSON(m), counted: true}
}

// submitQueued writes a record made by queuedRecord, without waiting.
func (b *Broker) submitQueued(rec op) { _ = b.store.submit(false, rec) }

func queuedKey(clientID string, seq uint64) []byte {
	return sessionKey(clientID, binary.BigEndian.AppendUint64(nil, seq))
}

// unstoreQueued deletes what storeQueued stored, once the message left the
// queue dropped.
func (b *Broker) unstoreQueued(clientID string, key uint64) {
	if b.store == nil || key == 0 {
		return
	}
	_ = b.store.submit(false, op{bucket: bucketQueued, key: queuedKey(clientID, key)})
}

// sentFromQueue stores pk, which became one of cl's inflight messages, as
// OnQosPublish does, and deletes its record as a queued message (key, 0
// for none) in the same write: a crash leaves one of the two, never both
// (which would deliver it twice) nor neither.
func (b *Broker) sentFromQueue(cl *mqtt.Client, pk packets.Packet, key uint64) {
	ops := make([]op, 0, 2)
	if b.store.has(cl.ID) {
		ops = append(ops, op{bucket: bucketInflight, key: inflightKey(cl.ID, pk.PacketID),
			val: mustJSON(toStored(cl.ID, pk)), counted: true})
	}
	if key != 0 {
		ops = append(ops, op{bucket: bucketQueued, key: queuedKey(cl.ID, key)})
	}
	if len(ops) > 0 {
		_ = b.store.submit(false, ops...)
	}
}

// forgetQueued deletes a queued message the table no longer allows.
func (b *Broker) forgetQueued(clientID string, packetID uint16) {
	if b.store != nil && b.store.has(clientID) {
		_ = b.store.submit(false, op{bucket: bucketInflight, key: inflightKey(clientID, packetID)})
	}
}

// openPersistence opens the store and adds its hook; after the routing
// hook, so that it sees only what the table routes.
func (b *Broker) openPersistence(p *Persistence) error {
	// Resend order matters with or without a store.
	if err := b.srv.AddHook(&orderHook{b: b}, nil); err != nil {
		return fmt.Errorf("broker: add hook ggcore-resend-order: %w", err)
	}
	if p == nil {
		return nil
	}
	s, err := p.opened, error(nil)
	p.opened = nil
	if s == nil {
		s, err = openStore(*p, b.log)
	}
	if err != nil {
		return err
	}
	if err := b.srv.AddHook(&persistHook{b: b, s: s}, nil); err != nil {
		s.close()
		return fmt.Errorf("broker: add hook ggcore-persist: %w", err)
	}
	b.store = s
	return nil
}

// closePersistence commits what is queued and closes the store.
func (b *Broker) closePersistence() error {
	if b.store == nil {
		return nil
	}
	return b.store.close()
}

// restore puts the stored state back into mochi before it serves, with
// the current group applied: sessions of devices no longer in the group
// (or whose registered certificate changed), expired sessions and
// messages, and queued messages the table no longer routes to their
// session are deleted, not restored. Subscriptions are restored as they
// were; like live ones, they deliver only what the table allows.
func (b *Broker) restore() error {
	s := b.store
	if s == nil || s.loaded == nil {
		return nil
	}
	l := s.loaded
	s.loaded = nil
	snap := b.snap.Load()
	now := time.Now().Unix()
	var ops []op
	restored := map[string]*mqtt.Client{}
	for _, c := range l.clients {
		t := snap.byName[c.ID]
		expiry := int64(b.limits.SessionExpiry)
		if c.ProtocolVersion == 5 {
			expiry = min(expiry, int64(c.Properties.SessionExpiryInterval))
		}
		switch {
		case t == nil || t.CertificateID != c.Certificate:
			b.log.Info("stored session dropped: device no longer in the group with that certificate", "client", c.ID, "group", snap.id)
		case c.Disconnected > 0 && c.Disconnected+expiry < now:
			b.log.Info("stored session dropped: expired", "client", c.ID)
		default:
			cl := b.srv.NewClient(nil, "mqtts", c.ID, false)
			cl.Properties.Clean = c.Clean
			cl.Properties.ProtocolVersion = c.ProtocolVersion
			cl.Properties.Props = packets.Properties{
				SessionExpiryInterval:     c.Properties.SessionExpiryInterval,
				SessionExpiryIntervalFlag: c.Properties.SessionExpiryIntervalFlag,
				ReceiveMaximum:            c.Properties.ReceiveMaximum,
				MaximumPacketSize:         c.Properties.MaximumPacketSize,
			}
			cl.Stop(packets.ErrServerShuttingDown)
			b.srv.Clients.Add(cl)
			restored[c.ID] = cl
			s.add(c.ID)
			s.certs.Store(c.ID, c.Certificate)
			continue
		}
		ops = append(ops, forgetOps(c.ID)...)
	}
	for _, sub := range l.subs {
		cl := restored[sub.Client]
		if cl == nil {
			continue // deleted with its session
		}
		sb := packets.Subscription{Filter: sub.Filter, Qos: sub.Qos, Identifier: sub.Identifier, NoLocal: sub.NoLocal,
			RetainHandling: sub.RetainHandling, RetainAsPublished: sub.RetainAsPublished}
		if b.srv.Topics.Subscribe(cl.ID, sb) {
			atomic.AddInt64(&b.srv.Info.Subscriptions, 1)
		}
		cl.State.Subscriptions.Add(sub.Filter, sb)
	}
	allowed := func(origin, target, topic string) bool {
		src, dst := snap.byName[origin], snap.byName[target]
		return src != nil && dst != nil && snap.table.Allowed(src.ARN, dst.ARN, topic)
	}
	expired := func(m storedMessage) bool {
		return (m.Expiry > 0 && m.Expiry < now) ||
			(b.limits.MessageExpiry > 0 && m.Created > 0 && now-m.Created > b.limits.MessageExpiry)
	}
	var queued, skipped int
	for _, m := range l.inflight {
		cl := restored[m.Client]
		if cl == nil {
			continue
		}
		// A PUBACK record (an older version stored them while mochi wrote
		// them) has nothing left to do.
		if m.FixedHeader.Type == packets.Puback ||
			(m.FixedHeader.Type == packets.Publish && (expired(m) || !allowed(m.Origin, m.Client, m.TopicName))) {
			ops = append(ops, op{bucket: bucketInflight, key: inflightKey(m.Client, m.PacketID)})
			skipped++
			continue
		}
		if cl.State.Inflight.Set(m.packet()) {
			atomic.AddInt64(&b.srv.Info.Inflight, 1)
			queued++
		}
	}
	// Messages that waited in a subscriber's queue follow the session's
	// inflight messages, in the order they were queued.
	slices.SortFunc(l.queued, func(a, b queuedRecord) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range l.queued {
		m := r.m
		cl := restored[m.Client]
		if cl == nil || expired(m) || !allowed(m.Origin, m.Client, m.TopicName) {
			ops = append(ops, op{bucket: bucketQueued, key: queuedKey(m.Client, r.seq)})
			if cl != nil {
				skipped++
			}
			continue
		}
		if b.restoreMessage(cl, m.packet(), r.seq, &ops) {
			queued++
		}
	}
	for _, m := range l.retained {
		if expired(m) {
			ops = append(ops, op{bucket: bucketRetained, key: []byte(m.TopicName)})
			continue
		}
		b.srv.Topics.RetainMessage(m.packet())
	}
	atomic.StoreInt64(&b.srv.Info.Retained, int64(b.srv.Topics.Retained.Len()))
	// Pending records: publishes acknowledged but maybe not queued for
	// every persistent session when the core stopped.
	for seq, m := range l.pending {
		pk := m.packet()
		if !expired(m) {
			for id, sub := range b.srv.Topics.Subscribers(pk.TopicName).Subscriptions {
				cl := restored[id]
				if cl == nil || !allowed(pk.Origin, id, pk.TopicName) || holds(cl, pk) || b.queues.holds(id, pk) ||
					(sub.NoLocal && pk.Origin == id) {
					continue
				}
				out := pk.Copy(false)
				out.FixedHeader.Qos = min(out.FixedHeader.Qos, sub.Qos)
				if out.FixedHeader.Qos == 0 {
					continue // a QoS 0 subscription gets nothing while offline
				}
				out.FixedHeader.Retain = false
				out.Properties.SubscriptionIdentifier = nil
				if b.restoreMessage(cl, out, 0, &ops) {
					queued++
				}
			}
		}
		ops = append(ops, op{bucket: bucketPending, key: binary.BigEndian.AppendUint64(nil, seq)})
	}
	b.log.Info("session store opened", "path", s.path, "sessions", len(restored), "queued_messages", queued,
		"retained_messages", len(l.retained), "dropped_by_table_or_expiry", skipped,
		"max_messages", s.limits.MaxMessages, "max_bytes", s.limits.MaxBytes)
	if len(ops) > 0 {
		if err := s.submit(true, ops...); err != nil {
			return fmt.Errorf("broker: session store %s: %w", s.path, err)
		}
	}
	return nil
}

// restoreMessage queues pk, read from the store, for restored session cl:
// as one of its inflight messages while none waits in its queue and its
// window has room, else at the end of its queue (queue.go), so that the
// order is kept. key is pk's record as a queued message (0: none); ops
// gets the writes that keep the store in step. False when pk was dropped:
// cl's queue is full.
func (b *Broker) restoreMessage(cl *mqtt.Client, pk packets.Packet, key uint64, ops *[]op) bool {
	if q := b.queues.get(cl.ID); (q == nil || q.live == 0) && b.queueRestored(cl, pk, ops) {
		if key != 0 {
			*ops = append(*ops, op{bucket: bucketQueued, key: queuedKey(cl.ID, key)})
		}
		return true
	}
	pk.PacketID = 0
	e := queued{qos: pk.FixedHeader.Qos, fwdRetained: pk.FixedHeader.Retain, ids: pk.Properties.SubscriptionIdentifier}
	pk.Properties.SubscriptionIdentifier = nil
	e.msg, e.size = &pk, entrySize(&pk)
	if key == 0 {
		e.key = b.store.seq.Add(1)
		m := toStored(cl.ID, pk)
		m.Properties.SubscriptionIdentifier = e.ids
		*ops = append(*ops, op{bucket: bucketQueued, key: queuedKey(cl.ID, e.key), val: mustJSON(m), counted: true})
	} else {
		e.key = key
	}
	if !b.queues.restored(cl.ID, e) {
		b.drops.add(cl.ID, "restored session's queue full", pk.TopicName, e.qos)
		*ops = append(*ops, op{bucket: bucketQueued, key: queuedKey(cl.ID, e.key)})
		return false
	}
	return true
}

// queueRestored makes pk one of cl's inflight messages with the next
// packet ID, and adds the op that stores it; false when cl's window is full.
func (b *Broker) queueRestored(cl *mqtt.Client, pk packets.Packet, ops *[]op) bool {
	if cl.State.Inflight.Len() >= int(b.srv.Options.Capabilities.MaximumInflight) {
		return false
	}
	n, err := cl.NextPacketID()
	if err != nil {
		return false
	}
	pk.PacketID = uint16(n)
	if !cl.State.Inflight.Set(pk) {
		return false
	}
	atomic.AddInt64(&b.srv.Info.Inflight, 1)
	*ops = append(*ops, op{bucket: bucketInflight, key: inflightKey(cl.ID, pk.PacketID), val: mustJSON(toStored(cl.ID, pk))})
	return true
}

// holds reports whether cl already has pk queued.
func holds(cl *mqtt.Client, pk packets.Packet) bool {
	for _, q := range cl.State.Inflight.GetAll(false) {
		if q.FixedHeader.Type == packets.Publish && q.Origin == pk.Origin && q.TopicName == pk.TopicName &&
			q.Created == pk.Created && string(q.Payload) == string(pk.Payload) {
			return true
		}
	}
	return false
}
