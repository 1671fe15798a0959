package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// open opens a spool for a test and closes it at the end.
func open(t testing.TB, o Options) *Spool {
	t.Helper()
	if o.Path == "" {
		o.Path = filepath.Join(t.TempDir(), "spool", "cloud.db")
	}
	if o.Log == nil {
		o.Log = testLogger(t)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger(t testing.TB) *slog.Logger {
	if tt, ok := t.(*testing.T); ok {
		return slog.New(slog.NewTextHandler(tt.Output(), nil))
	}
	return slog.New(slog.DiscardHandler)
}

func mustAppend(t testing.TB, s *Spool, topic string, payload []byte) {
	t.Helper()
	if err := s.Append(context.Background(), topic, payload); err != nil {
		t.Fatal(err)
	}
}

func peekAll(t testing.TB, s *Spool) []Message {
	t.Helper()
	m, err := s.Peek(1 << 30)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func topics(ms []Message) []string {
	var ts []string
	for _, m := range ms {
		ts = append(ts, m.Topic)
	}
	return ts
}

func payloadFor(i int) []byte {
	return bytes.Repeat([]byte{byte(i), byte(i >> 8), '-'}, 1+i%50)
}

// checkSeqs fails unless the messages' seqs strictly increase.
func checkSeqs(t testing.TB, ms []Message) {
	t.Helper()
	for i := 1; i < len(ms); i++ {
		if ms[i].Seq <= ms[i-1].Seq {
			t.Fatalf("seq %d after %d", ms[i].Seq, ms[i-1].Seq)
		}
	}
}

func TestOrderAndAck(t *testing.T) {
	const n = 20
	tests := []struct {
		name  string
		order func() []int // indices of messages in ack order
	}{
		{"in order", func() []int { return seq(0, n) }},
		{"reverse", func() []int { s := seq(0, n); slices.Reverse(s); return s }},
		{"odd then even", func() []int {
			var s []int
			for i := 1; i < n; i += 2 {
				s = append(s, i)
			}
			for i := 0; i < n; i += 2 {
				s = append(s, i)
			}
			return s
		}},
		{"random", func() []int {
			s := seq(0, n)
			rand.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cloud.db")
			s := open(t, Options{Path: path})
			var want []Message
			for i := range n {
				topic := fmt.Sprintf("t/%d", i)
				mustAppend(t, s, topic, payloadFor(i))
				want = append(want, Message{Topic: topic, Payload: payloadFor(i)})
			}
			got := peekAll(t, s)
			if len(got) != n {
				t.Fatalf("Peek: %d messages, want %d", len(got), n)
			}
			checkSeqs(t, got)
			for i := range want {
				want[i].Seq = got[i].Seq
			}
			if first, _ := s.Peek(3); !slices.EqualFunc(first, want[:3], msgEqual) {
				t.Fatalf("Peek(3) = %v", topics(first))
			}
			order := tt.order()
			for k, i := range order {
				if err := s.Ack(want[i].Seq); err != nil {
					t.Fatal(err)
				}
				if err := s.Ack(want[i].Seq); err != nil { // again: no-op
					t.Fatal(err)
				}
				left := remaining(want, order[:k+1])
				if got := peekAll(t, s); !slices.EqualFunc(got, left, msgEqual) {
					t.Fatalf("after acking %v: Peek = %v, want %v", order[:k+1], topics(got), topics(left))
				}
				if k == n/2 { // acks survive Close/Open
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = open(t, Options{Path: path})
					if got := peekAll(t, s); !slices.EqualFunc(got, left, msgEqual) {
						t.Fatalf("after reopen: Peek = %v, want %v", topics(got), topics(left))
					}
				}
			}
			if st := s.Stats(); st.Messages != 0 || st.Bytes != 0 {
				t.Fatalf("Stats after acking all = %+v", st)
			}
		})
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func remaining(all []Message, acked []int) []Message {
	var r []Message
	for i, m := range all {
		if !slices.Contains(acked, i) {
			r = append(r, m)
		}
	}
	return r
}

func msgEqual(a, b Message) bool {
	return a.Seq == b.Seq && a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload)
}

func TestSeqAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.db")
	var last uint64
	for round := range 4 {
		s := open(t, Options{Path: path, compactBytes: 4096})
		for i := range 50 {
			mustAppend(t, s, "t", payloadFor(i))
		}
		ms := peekAll(t, s)
		checkSeqs(t, ms)
		if ms[0].Seq <= last {
			t.Fatalf("round %d: seq %d after %d", round, ms[0].Seq, last)
		}
		last = ms[len(ms)-1].Seq
		for _, m := range ms { // ack all: compaction leaves an empty file
			s.Ack(m.Seq)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, Options{Path: path})
	if st := s.Stats(); st.Messages != 0 {
		t.Fatalf("Stats = %+v, want empty", st)
	}
	mustAppend(t, s, "t", nil)
	if ms := peekAll(t, s); ms[0].Seq != last+1 {
		t.Fatalf("seq %d, want %d", ms[0].Seq, last+1)
	}
}

func TestWait(t *testing.T) {
	s := open(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait on empty spool = %v", err)
	}
	done := make(chan error)
	go func() { done <- s.Wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	mustAppend(t, s, "t", []byte("x"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(context.Background()); err != nil { // not empty: immediate
		t.Fatal(err)
	}
	ms := peekAll(t, s)
	s.Ack(ms[0].Seq)
	go func() { done <- s.Wait(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
}

func TestClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.db")
	s := open(t, Options{Path: path})
	mustAppend(t, s, "t", nil)
	if _, err := Open(Options{Path: path}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open = %v, want in use", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if err := s.Append(context.Background(), "t", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append = %v", err)
	}
	if _, err := s.Peek(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Peek = %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack = %v", err)
	}
}

func TestBound(t *testing.T) {
	const max = MinMaxBytes
	tests := []struct {
		name string
		size func(i int) int // payload size of message i
	}{
		{"256 B", func(int) int { return 256 }},
		{"mixed", func(i int) int { return (i * 7919) % 9000 }},
		{"large", func(int) int { return 100 << 10 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cloud.db")
			s := open(t, Options{Path: path, MaxBytes: max})
			var sizes []int64
			total := 0
			n := 0
			for ; total < 1<<20; n++ {
				p := make([]byte, tt.size(n))
				copy(p, fmt.Sprint(n))
				mustAppend(t, s, fmt.Sprintf("m/%d", n), p)
				total += len(p)
				sizes = append(sizes, int64(len(p)+len(fmt.Sprintf("m/%d", n))+Overhead))
				if st := s.Stats(); st.Bytes > max {
					t.Fatalf("Bytes %d > MaxBytes %d", st.Bytes, max)
				}
			}
			// Expected: the longest suffix that fits.
			var keep int64
			first := n
			for first > 0 && keep+sizes[first-1] <= max {
				first--
				keep += sizes[first]
			}
			ms := peekAll(t, s)
			checkSeqs(t, ms)
			var want []string
			for i := first; i < n; i++ {
				want = append(want, fmt.Sprintf("m/%d", i))
			}
			if !slices.Equal(topics(ms), want) {
				t.Fatalf("kept %d messages %v..., want m/%d..m/%d", len(ms), topics(ms)[:min(3, len(ms))], first, n-1)
			}
			st := s.Stats()
			if st.Dropped != uint64(first) || st.DroppedTotal != uint64(first) || st.Bytes != keep || st.Appended != uint64(n) {
				t.Fatalf("Stats = %+v, want Dropped %d Bytes %d Appended %d", st, first, keep, n)
			}
			s.Close()
			s = open(t, Options{Path: path, MaxBytes: max})
			if st := s.Stats(); st.DroppedTotal != uint64(first) || st.Dropped != 0 || st.Bytes != keep {
				t.Fatalf("after reopen: Stats = %+v, want DroppedTotal %d", st, first)
			}
			if !slices.Equal(topics(peekAll(t, s)), want) {
				t.Fatal("after reopen: different messages")
			}
		})
	}
}

func TestLowerLimitOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.db")
	s := open(t, Options{Path: path, MaxBytes: 1 << 20})
	for i := range 900 {
		mustAppend(t, s, fmt.Sprint(i), make([]byte, 1000))
	}
	s.Close()
	s = open(t, Options{Path: path, MaxBytes: MinMaxBytes})
	st := s.Stats()
	if st.Bytes > MinMaxBytes || st.Dropped == 0 || st.Messages+int(st.Dropped) != 900 {
		t.Fatalf("Stats = %+v", st)
	}
	ms := peekAll(t, s)
	if ms[len(ms)-1].Topic != "899" || ms[0].Topic != fmt.Sprint(st.Dropped) {
		t.Fatalf("kept %s..%s", ms[0].Topic, ms[len(ms)-1].Topic)
	}
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	for _, max := range []int64{-1, 1, MinMaxBytes - 1} {
		_, err := Open(Options{Path: filepath.Join(dir, "a.db"), MaxBytes: max})
		if err == nil || !strings.Contains(err.Error(), "GG_CONFIG_MAX_SIZE_BYTES") {
			t.Errorf("MaxBytes %d: err = %v", max, err)
		}
	}
	if _, err := Open(Options{}); err == nil {
		t.Error("Open without a path succeeded")
	}

	s := open(t, Options{MaxBytes: MinMaxBytes})
	tests := []struct {
		name    string
		topic   string
		payload int
		err     error
	}{
		{"fits exactly", "t", MinMaxBytes - Overhead - 1, nil},
		{"one byte too many", "t", MinMaxBytes - Overhead, ErrTooLarge},
		{"much larger", "t", 10 << 20, ErrTooLarge},
		{"long topic", strings.Repeat("x", MinMaxBytes), 0, ErrTooLarge},
		{"empty", "", 0, nil},
	}
	for _, tt := range tests {
		err := s.Append(context.Background(), tt.topic, make([]byte, tt.payload))
		if !errors.Is(err, tt.err) {
			t.Errorf("%s: Append = %v, want %v", tt.name, err, tt.err)
		}
		if err != nil && !strings.Contains(err.Error(), "GG_CONFIG_MAX_SIZE_BYTES") {
			t.Errorf("%s: error %q does not name the setting", tt.name, err)
		}
	}
	// The exact fit was then dropped for the empty message.
	if st := s.Stats(); st.Messages != 1 || st.Dropped != 1 {
		t.Errorf("Stats = %+v", st)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Append(ctx, "t", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Append with canceled ctx = %v", err)
	}
}

// spoolFile writes a spool with n messages, each committed in its own
// frame, and returns its path and contents.
func spoolFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cloud.db")
	s := open(t, Options{Path: path})
	for i := range n {
		mustAppend(t, s, fmt.Sprintf("m/%d", i), payloadFor(i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

// frameOffsets returns the offsets of the frames of a spool file.
func frameOffsets(b []byte) []int {
	var offs []int
	for p := headerSize; p+frameHeaderSize <= len(b); {
		n, _, _ := parseFrameHeader(b[p:])
		offs = append(offs, p)
		p += frameHeaderSize + int(n)
	}
	return offs
}

func TestCorrupt(t *testing.T) {
	garbage := make([]byte, 5000)
	for i := range garbage {
		garbage[i] = byte(rand.IntN(256))
	}
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"garbage", func([]byte) []byte { return garbage }},
		{"short", func(b []byte) []byte { return b[:7] }},
		{"text", func([]byte) []byte { return []byte("hello, this is not a spool\n") }},
		{"bad version", func(b []byte) []byte { b[8] = 9; copy(b[12:16], fileHeaderCRC(b)); return b }},
		{"flipped byte in first frame body", func(b []byte) []byte { b[frameOffsets(b)[1]+frameHeaderSize+3] ^= 1; return b }},
		{"flipped byte in a middle frame header", func(b []byte) []byte { o := frameOffsets(b); b[o[len(o)/2]] ^= 0x40; return b }},
		{"zeroed middle", func(b []byte) []byte { o := frameOffsets(b); clear(b[o[3] : o[3]+40]); return b }},
		{"bad record in valid frame", func(b []byte) []byte {
			f := appendSeqs(beginFrame(nil), 99, []uint64{1})
			sealFrame(f)
			return append(b, f...)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, b := spoolFile(t, 10)
			bad := tt.mutate(bytes.Clone(b))
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(Options{Path: path, Log: testLogger(t)})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want ErrCorrupt naming %s", err, path)
			}
			t.Log(err)
			if after, _ := os.ReadFile(path); !bytes.Equal(after, bad) {
				t.Fatal("the corrupt file was modified")
			}
		})
	}
}

// TestTornTail: damage confined to the last frame is what a power cut
// during a write leaves; Open drops that frame only.
func TestTornTail(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(b []byte, last int) []byte
	}{
		{"cut in frame header", func(b []byte, last int) []byte { return b[:last+5] }},
		{"cut in body", func(b []byte, last int) []byte { return b[:len(b)-3] }},
		{"last byte flipped", func(b []byte, last int) []byte { b[len(b)-1] ^= 0xff; return b }},
		{"zeroed tail", func(b []byte, last int) []byte { clear(b[last:]); return b }},
		{"zeroed tail longer", func(b []byte, last int) []byte { clear(b[last:]); return append(b, make([]byte, 8192)...) }},
		{"garbage tail", func(b []byte, last int) []byte {
			for i := last; i < len(b); i++ {
				b[i] = byte(i * 31)
			}
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 10
			path, b := spoolFile(t, n)
			offs := frameOffsets(b)
			if err := os.WriteFile(path, tt.mutate(b, offs[len(offs)-1]), 0o600); err != nil {
				t.Fatal(err)
			}
			s := open(t, Options{Path: path})
			ms := peekAll(t, s)
			if len(ms) != n-1 || ms[n-2].Topic != fmt.Sprintf("m/%d", n-2) || !bytes.Equal(ms[n-2].Payload, payloadFor(n-2)) {
				t.Fatalf("recovered %v", topics(ms))
			}
			mustAppend(t, s, "after", nil)
			s.Close()
			s = open(t, Options{Path: path})
			ms = peekAll(t, s)
			checkSeqs(t, ms)
			if len(ms) != n || ms[n-1].Topic != "after" {
				t.Fatalf("after reopen: %v", topics(ms))
			}
		})
	}
}

func TestStaleTmpRemoved(t *testing.T) {
	path, _ := spoolFile(t, 3)
	if err := os.WriteFile(path+".tmp", []byte("half a compaction"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := open(t, Options{Path: path})
	if len(peekAll(t, s)) != 3 {
		t.Fatal("messages lost")
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("stale .tmp: %v", err)
	}
}

func TestDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "w", "spool")
	open(t, Options{Path: filepath.Join(dir, "cloud.db")})
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v", st.Mode())
	}
}

// TestConcurrent: 8 appenders, one consumer acking in a scrambled order,
// with frequent compactions.
func TestConcurrent(t *testing.T) {
	const writers, per = 8, 300
	path := filepath.Join(t.TempDir(), "cloud.db")
	s := open(t, Options{Path: path, compactBytes: 16 << 10})
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range per {
				if err := s.Append(context.Background(), fmt.Sprintf("%d/%d", g, i), payloadFor(i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	next := make([]int, writers) // next expected i per writer
	seen := 0
	var lastSeq uint64
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for seen < writers*per {
		if err := s.Wait(ctx); err != nil {
			t.Fatalf("Wait: %v after %d messages", err, seen)
		}
		ms, err := s.Peek(1 + rand.IntN(100))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Seq <= lastSeq {
				t.Fatalf("seq %d after %d: delivered twice or out of order", m.Seq, lastSeq)
			}
			lastSeq = m.Seq
			var g, i int
			if _, err := fmt.Sscanf(m.Topic, "%d/%d", &g, &i); err != nil {
				t.Fatal(err)
			}
			if i != next[g] || !bytes.Equal(m.Payload, payloadFor(i)) {
				t.Fatalf("writer %d: got message %d, want %d", g, i, next[g])
			}
			next[g]++
			seen++
		}
		rand.Shuffle(len(ms), func(i, j int) { ms[i], ms[j] = ms[j], ms[i] })
		for _, m := range ms {
			if err := s.Ack(m.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	st := s.Stats()
	s.mu.Lock()
	commits := s.commits
	s.mu.Unlock()
	if st.Messages != 0 || st.Appended != writers*per || st.Acked != writers*per || st.Dropped != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if commits >= writers*per {
		t.Errorf("%d commits for %d Appends: no group commit", commits, writers*per)
	}
	t.Logf("%d Appends in %d commits", writers*per, commits)
	s.Close()
	s = open(t, Options{Path: path})
	if st := s.Stats(); st.Messages != 0 {
		t.Fatalf("after reopen: %d messages", st.Messages)
	}
}

// TestIndexTidy: a message that is never acked does not make the index
// grow with the messages acked after it.
func TestIndexTidy(t *testing.T) {
	s := open(t, Options{compactBytes: 64 << 10, noSync: true})
	mustAppend(t, s, "stuck", nil)
	for i := range 5000 {
		mustAppend(t, s, "t", payloadFor(i))
		ms, _ := s.Peek(2)
		s.Ack(ms[1].Seq)
	}
	s.mu.Lock()
	n := len(s.idx.e)
	s.mu.Unlock()
	if n > 600 {
		t.Fatalf("index holds %d entries for 1 message", n)
	}
	if ms := peekAll(t, s); len(ms) != 1 || ms[0].Topic != "stuck" {
		t.Fatalf("Peek = %v", topics(ms))
	}
}

func fileHeaderCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(nil, checksum(b[:12]))
}
