package main

import (
	"errors"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		s    stamp
		size int
		want int // encoded length
	}{
		{"bench payload", stamp{Sent: 1234567 * time.Microsecond, Pub: 3, Seq: 19999}, 256, 256},
		{"zero stamp", stamp{}, 256, 256},
		{"largest values", stamp{Sent: 1<<63 - 1, Pub: 1<<32 - 1, Seq: 1<<64 - 1}, stampSize, stampSize},
		{"size below the stamp is raised", stamp{Seq: 7}, 3, stampSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.s.encode(tt.size)
			if len(b) != tt.want {
				t.Fatalf("encode(%d) made %d bytes, want %d", tt.size, len(b), tt.want)
			}
			got, err := decodeStamp(b)
			if err != nil {
				t.Fatalf("decodeStamp: %v", err)
			}
			if got != tt.s {
				t.Errorf("decodeStamp(encode(%+v)) = %+v", tt.s, got)
			}
		})
	}
}

func TestDecodeStampRejects(t *testing.T) {
	good := stamp{Pub: 1, Seq: 2}.encode(64)
	badMagic := append([]byte(nil), good...)
	badMagic[0] = 'x'
	tests := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"one byte short", good[:stampSize-1]},
		{"wrong magic", badMagic},
		{"foreign message", []byte(`{"temperature": 21.5, "unit": "C"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeStamp(tt.payload); !errors.Is(err, errNotStamp) {
				t.Errorf("decodeStamp(%q) error = %v, want errNotStamp", tt.payload, err)
			}
		})
	}
}

func FuzzDecodeStamp(f *testing.F) {
	f.Add(stamp{Sent: time.Second, Pub: 2, Seq: 42}.encode(256))
	f.Add([]byte("ggb1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeStamp(b)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to the same stamp bytes.
		if again := s.encode(len(b)); string(again[:stampSize]) != string(b[:stampSize]) {
			t.Errorf("decodeStamp(%x) = %+v, which encodes to %x", b[:stampSize], s, again[:stampSize])
		}
	})
}
