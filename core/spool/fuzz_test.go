package spool

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// decoded is a record with its slices copied.
type decoded struct {
	typ              byte
	seq              uint64
	topic, payload   string
	seqs             []uint64
	nextSeq, dropped uint64
}

func decodeAll(body []byte) ([]decoded, error) {
	var out []decoded
	err := decodeBody(body, func(r *record) error {
		d := decoded{typ: r.typ, seq: r.seq, topic: string(r.topic), payload: string(r.payload),
			seqs: slices.Clone(r.seqs), nextSeq: r.nextSeq, dropped: r.dropped}
		if r.typ == recAppend && string(body[r.off+r.hdr:r.off+r.hdr+len(r.topic)]) != d.topic {
			return errors.New("hdr does not locate the topic")
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func encodeAll(ds []decoded) []byte {
	var b []byte
	for _, d := range ds {
		switch d.typ {
		case recAppend:
			b, _ = appendMessage(b, d.seq, d.topic, []byte(d.payload))
		case recAck, recDrop:
			b = appendSeqs(b, d.typ, d.seqs)
		case recMeta:
			b = appendMeta(b, d.nextSeq, d.dropped)
		}
	}
	return b
}

func sampleBody() []byte {
	b, _ := appendMessage(nil, 7, "dt/sensor/1", []byte(`{"t":21.5}`))
	b, _ = appendMessage(b, 8, "", nil)
	b = appendSeqs(b, recDrop, []uint64{1, 2, 300})
	b = appendSeqs(b, recAck, []uint64{1 << 40})
	return appendMeta(b, 9, 3)
}

// FuzzDecodeBody: the record parser never panics, and what it accepts
// re-encodes to records that decode the same.
func FuzzDecodeBody(f *testing.F) {
	f.Add(sampleBody())
	f.Add([]byte{recAppend, 1, 0, 0})
	f.Add([]byte{recAck, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{recAppend, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0})
	f.Add([]byte{recMeta, 0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		ds, err := decodeAll(body)
		if err != nil {
			return
		}
		again, err := decodeAll(encodeAll(ds))
		if err != nil {
			t.Fatalf("re-encoded records do not decode: %v", err)
		}
		if len(again) != len(ds) {
			t.Fatalf("%d records, then %d", len(ds), len(again))
		}
		for i := range ds {
			a, b := ds[i], again[i]
			if a.typ != b.typ || a.seq != b.seq || a.topic != b.topic || a.payload != b.payload ||
				!slices.Equal(a.seqs, b.seqs) || a.nextSeq != b.nextSeq || a.dropped != b.dropped {
				t.Fatalf("record %d: %+v, then %+v", i, a, b)
			}
		}
	})
}

// FuzzOpen: Open of a file with a valid header and any contents never
// panics; it either recovers a consistent spool or fails with ErrCorrupt
// without touching the file.
func FuzzOpen(f *testing.F) {
	frame := func(body []byte) []byte {
		b := append(beginFrame(nil), body...)
		sealFrame(b)
		return b
	}
	f.Add(frame(sampleBody()))
	f.Add(append(frame(sampleBody()), 1, 2, 3))
	f.Add(append(frame(appendMeta(nil, 5, 0)), frame(sampleBody())...))
	msg, _ := appendMessage(nil, 1, "a", []byte("b"))
	f.Add(append(frame(msg), frame(appendSeqs(nil, recAck, []uint64{1}))...))
	f.Fuzz(func(t *testing.T, tail []byte) {
		path := filepath.Join(t.TempDir(), "cloud.db")
		content := append(fileHeader(), tail...)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(Options{Path: path, Log: testLogger(t), noSync: true})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open: %v", err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, content) {
				t.Fatal("corrupt file modified")
			}
			return
		}
		defer s.Close()
		ms, err := s.Peek(1 << 30)
		if err != nil {
			t.Fatal(err)
		}
		checkSeqs(t, ms)
		st := s.Stats()
		var bytes int64
		for _, m := range ms {
			bytes += int64(len(m.Topic)+len(m.Payload)) + Overhead
		}
		if st.Messages != len(ms) || st.Bytes != bytes || st.Bytes > st.MaxBytes {
			t.Fatalf("Stats %+v for %d messages of %d bytes", st, len(ms), bytes)
		}
		if len(ms) > 0 {
			if err := s.Ack(ms[0].Seq); err != nil {
				t.Fatal(err)
			}
		}
	})
}
