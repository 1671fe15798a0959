// Package spool is the core's persistent, bounded FIFO of messages bound
// for the cloud: the equivalent of Greengrass v1's GGCloudSpooler with
// FileSystem storage.
//
// Messages are appended while the upstream connection is down (or always),
// survive a restart or power cut of the core, are read back oldest first
// with Peek, and are removed with Ack once the upstream PUBACK arrives.
// Delivery is at-least-once: a message whose Append returned stays until it
// is acked or dropped, and after a crash acked messages may come back.
//
// The spool is bounded by Options.MaxBytes (v1's GG_CONFIG_MAX_SIZE_BYTES).
// When a new message does not fit, the oldest messages are dropped to make
// room, counted in Stats and logged at most once a second.
//
// A Spool is one append-only file (see format.go) plus an in-memory index of
// the offsets of its messages; topics and payloads stay on disk and are read
// by Peek. Concurrent Appends are committed together, one write and one
// fdatasync per batch (group commit). Acks are written lazily, with the next
// batch or within 100 ms, since a lost ack only causes a duplicate.
package spool

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const (
	// DefaultMaxBytes is the size limit when Options.MaxBytes is 0: v1's
	// default GG_CONFIG_MAX_SIZE_BYTES, 2.5 MB.
	DefaultMaxBytes = 2621440
	// MinMaxBytes is the smallest size limit v1 accepts.
	MinMaxBytes = 262144
	// Overhead is the fixed number of bytes a message is accounted for on
	// top of its topic and payload (record framing and index entry).
	Overhead = 32

	maxField      = math.MaxUint32 // largest topic or payload the decoder accepts
	maxMessage    = 1 << 30        // largest topic+payload Append accepts, whatever MaxBytes
	maxBatch      = 4 << 20        // an Append batch is closed before it grows past this
	ackFlushCount = 1024           // pending acks that force a write
	ackFlushDelay = 100 * time.Millisecond
	dropLogEvery  = time.Second
)

var (
	// ErrClosed is returned by operations on a closed Spool.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge is returned (wrapped) by Append for a message that is
	// larger than the whole spool.
	ErrTooLarge = errors.New("spool: message larger than the spool")
	// ErrCorrupt is returned (wrapped) by Open for a spool file that is
	// damaged other than by a torn final write. The file is left alone.
	ErrCorrupt = errors.New("spool: corrupt spool file")
)

// Options configures Open.
type Options struct {
	// Path is the spool file, e.g. <writeDirectory>/spool/cloud.db. Its
	// directory is created with mode 0700 if missing. Open also uses
	// Path+".lock" (held while open) and Path+".tmp" (during compaction).
	Path string
	// MaxBytes bounds Stats().Bytes. 0 means DefaultMaxBytes; less than
	// MinMaxBytes is an error. It may differ from the previous run: on
	// Open, the oldest messages are dropped until the spool fits.
	MaxBytes int64
	// Log receives recovery notices and drop reports; nil means slog.Default().
	Log *slog.Logger

	noSync       bool  // benchmarks only: skip fdatasync
	compactBytes int64 // tests only: compaction threshold instead of MaxBytes
}

// Message is a spooled message.
type Message struct {
	// Seq is assigned by Append: strictly increasing, also across restarts.
	Seq uint64
	// Topic is the MQTT topic given to Append.
	Topic string
	// Payload is the payload given to Append.
	Payload []byte
}

// Stats are a Spool's counters.
type Stats struct {
	// Messages is the number of messages in the spool.
	Messages int
	// Bytes is the accounted size of those messages: for each,
	// len(Topic) + len(Payload) + Overhead. It never exceeds MaxBytes.
	Bytes int64
	// MaxBytes is the size limit in force.
	MaxBytes int64
	// Appended counts the Appends committed since Open.
	Appended uint64
	// Acked counts the messages removed by Ack since Open.
	Acked uint64
	// Dropped counts the oldest messages dropped to make room since Open.
	Dropped uint64
	// DroppedTotal counts dropped messages over the life of the spool
	// file, persisted across restarts.
	DroppedTotal uint64
}

// Spool is a persistent FIFO of messages. Its methods are safe for
// concurrent use.
type Spool struct {
	path   string
	max    int64
	log    *slog.Logger
	noSync bool
	lockf  *os.File
	// compactAt is the garbage in the file (bytes of removed messages and
	// of ack/drop records) that triggers compaction.
	compactAt int64

	kickC   chan struct{} // wakes the committer
	closedC chan struct{} // closed by Close
	stopped chan struct{} // closed when the committer has exited

	mu       sync.Mutex
	f        *os.File
	size     int64 // end of the last frame; written by the committer only
	idx      index
	nextSeq  uint64
	open     *batch   // batch that takes new Appends
	queue    []*batch // full batches, before open
	spareBuf []byte
	acks     []uint64 // acked, not yet written
	ackSpare []uint64
	ackSince time.Time     // when acks became non-empty
	notEmpty chan struct{} // closed when messages arrive; nil if nobody waits
	closing  bool
	err      error // sticky: a failed fdatasync
	closeErr error
	commits  uint64 // frames written since Open
	stats    Stats

	// committer only
	dropLogN     uint64
	dropLogAt    time.Time
	compactRetry int64 // after a failed compaction, retry beyond this size
}

// batch is a group of Appends committed as one frame.
type batch struct {
	buf   []byte // the frame: header room, then message records
	ents  []pending
	bytes int64 // Σ accounted size
	done  chan struct{}
	err   error
}

type pending struct {
	seq     uint64
	rel     int // offset of the record in buf
	hdr     uint8
	tlen    uint32
	plen    uint32
	dropped bool
}

// Open opens the spool at o.Path, creating it if missing, and recovers the
// messages on disk. A torn final write (a power cut during an Append that
// never returned) is cut off with a warning; any other damage makes Open
// fail with an error wrapping ErrCorrupt that names the file, which is left
// untouched. Only one Spool (in any process) may have a path open.
func Open(o Options) (*Spool, error) {
	if o.Path == "" {
		return nil, errors.New("spool: no path")
	}
	max := o.MaxBytes
	if max == 0 {
		max = DefaultMaxBytes
	}
	if max < MinMaxBytes {
		return nil, fmt.Errorf("spool: size limit (GG_CONFIG_MAX_SIZE_BYTES) %d is below the minimum %d", o.MaxBytes, MinMaxBytes)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	s := &Spool{
		path:    o.Path,
		max:     max,
		log:     log.With("path", o.Path),
		noSync:  o.noSync,
		kickC:   make(chan struct{}, 1),
		closedC: make(chan struct{}),
		stopped: make(chan struct{}),
		nextSeq: 1,
	}
	s.compactAt = max
	if o.compactBytes > 0 {
		s.compactAt = o.compactBytes
	}
	s.stats.MaxBytes = max
	dir := filepath.Dir(o.Path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if !o.noSync {
			syncDir(filepath.Dir(dir)) // make the new directory's entry durable
		}
	}
	lockf, err := lockFile(o.Path)
	if err != nil {
		return nil, err
	}
	s.lockf = lockf
	if err := s.load(); err != nil {
		if s.f != nil {
			s.f.Close()
		}
		lockf.Close()
		return nil, err
	}
	go s.run()
	return s, nil
}

// Append adds a message at the tail of the spool and returns once it is on
// disk (fdatasync). Concurrent Appends share one write. If the spool is
// full the oldest messages are dropped. A message whose accounted size
// exceeds MaxBytes is refused with an error wrapping ErrTooLarge. If ctx
// ends first Append returns ctx.Err(), and the message may or may not have
// been spooled. The payload is copied. After a failed fdatasync the Spool
// refuses further Appends with that error; Close and Open it again.
func (s *Spool) Append(ctx context.Context, topic string, payload []byte) error {
	size := int64(len(topic)) + int64(len(payload)) + Overhead
	if size > s.max || len(topic)+len(payload) > maxMessage {
		return fmt.Errorf("%w: %d bytes (topic %q) with a limit of %d (GG_CONFIG_MAX_SIZE_BYTES)", ErrTooLarge, size, topic, s.max)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return err
	}
	b := s.open
	if b == nil || len(b.buf) > frameHeaderSize && len(b.buf)+int(size) > maxBatch {
		if b != nil {
			s.queue = append(s.queue, b)
		}
		b = &batch{buf: beginFrame(s.spareBuf[:0]), done: make(chan struct{})}
		s.spareBuf = nil
		s.open = b
	}
	seq := s.nextSeq
	s.nextSeq++
	rel := len(b.buf)
	var hdr int
	b.buf, hdr = appendMessage(b.buf, seq, topic, payload)
	b.ents = append(b.ents, pending{seq: seq, rel: rel, hdr: uint8(hdr), tlen: uint32(len(topic)), plen: uint32(len(payload))})
	b.bytes += size
	s.mu.Unlock()
	s.kick()
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Peek returns the oldest messages, up to max, in order, without removing
// them. It returns only messages whose Append has completed.
func (s *Spool) Peek(max int) ([]Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, ErrClosed
	}
	if max <= 0 || s.idx.live == 0 {
		return nil, nil
	}
	ents := make([]entry, 0, min(max, s.idx.live))
	var need int64
	s.idx.each(func(e *entry) bool {
		ents = append(ents, *e)
		need += e.recLen()
		return len(ents) < max
	})
	first, last := ents[0].off, ents[len(ents)-1].off+ents[len(ents)-1].recLen()
	msgs := make([]Message, len(ents))
	if span := last - first; span <= 2*need+64<<10 {
		// Usually contiguous: one read.
		buf := make([]byte, span)
		if _, err := s.f.ReadAt(buf, first); err != nil {
			return nil, fmt.Errorf("spool: reading %s: %w", s.path, err)
		}
		for i, e := range ents {
			msgs[i] = message(&e, buf[e.off-first:])
		}
		return msgs, nil
	}
	for i, e := range ents {
		buf := make([]byte, e.recLen())
		if _, err := s.f.ReadAt(buf, e.off); err != nil {
			return nil, fmt.Errorf("spool: reading %s: %w", s.path, err)
		}
		msgs[i] = message(&e, buf)
	}
	return msgs, nil
}

// message builds a Message from an entry and its record bytes.
func message(e *entry, rec []byte) Message {
	t := int(e.hdr)
	p := t + int(e.tlen)
	end := p + int(e.plen)
	return Message{Seq: e.seq, Topic: string(rec[t:p]), Payload: rec[p:end:end]}
}

// Wait returns nil as soon as the spool holds a message, ctx.Err() if ctx
// ends first, or ErrClosed if the spool is closed.
func (s *Spool) Wait(ctx context.Context) error {
	for {
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.idx.live > 0 {
			s.mu.Unlock()
			return nil
		}
		if s.notEmpty == nil {
			s.notEmpty = make(chan struct{})
		}
		ch := s.notEmpty
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.closedC:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Ack removes message seq, typically once its PUBACK arrived. Acks may come
// in any order; acking a seq that is not in the spool (already acked or
// dropped, or never appended) does nothing. The removal is written to disk
// lazily: after a crash, recently acked messages may reappear.
func (s *Spool) Ack(seq uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return ErrClosed
	}
	if _, ok := s.idx.remove(seq); !ok {
		return nil
	}
	s.stats.Acked++
	if len(s.acks) == 0 {
		s.ackSince = time.Now()
	}
	s.acks = append(s.acks, seq)
	if len(s.acks) == 1 || len(s.acks) >= ackFlushCount {
		s.kick()
	}
	return nil
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Messages = s.idx.live
	st.Bytes = s.idx.bytes
	return st
}

// Close writes what is pending (Appends in progress complete), closes the
// file and releases the path. Further calls return ErrClosed, except Close,
// which returns nil.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.stopped
		return nil
	}
	s.closing = true
	close(s.closedC)
	s.mu.Unlock()
	s.kick()
	<-s.stopped
	return s.closeErr
}

func (s *Spool) kick() {
	select {
	case s.kickC <- struct{}{}:
	default:
	}
}

// corrupt returns the error for damage at offset off.
func (s *Spool) corrupt(off int64, what string) error {
	return fmt.Errorf("%w %s at offset %d: %s; the file was left as is: move it aside to start an empty spool",
		ErrCorrupt, s.path, off, what)
}
