package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// payloadMagic starts every ggbench payload, so that a stray message on a
// bench topic is recognised and not counted.
var payloadMagic = [4]byte{'g', 'g', 'b', '1'}

// stampSize is the length of the encoded stamp; payloads may be longer and
// are padded after it.
const stampSize = 4 + 8 + 4 + 8

// errNotStamp means a payload is not a ggbench payload.
var errNotStamp = errors.New("not a ggbench payload")

// stamp is what every bench message carries: when it was sent, by which
// publisher, and its sequence number within that publisher's stream.
type stamp struct {
	// Sent is the send time as an offset from the run's start instant
	// (monotonic clock; publisher and subscribers share the process).
	Sent time.Duration
	// Pub is the publisher's index in the run.
	Pub uint32
	// Seq numbers the publisher's messages from 0.
	Seq uint64
}

// encode returns a payload of size bytes (at least stampSize) holding s:
// magic, Sent (int64 ns), Pub, Seq, all big-endian, then filler.
func (s stamp) encode(size int) []byte {
	if size < stampSize {
		size = stampSize
	}
	b := make([]byte, size)
	copy(b, payloadMagic[:])
	binary.BigEndian.PutUint64(b[4:], uint64(s.Sent))
	binary.BigEndian.PutUint32(b[12:], s.Pub)
	binary.BigEndian.PutUint64(b[16:], s.Seq)
	for i := stampSize; i < size; i++ {
		b[i] = byte('a' + i%26)
	}
	return b
}

// decodeStamp reads the stamp at the start of a payload.
func decodeStamp(b []byte) (stamp, error) {
	if len(b) < stampSize {
		return stamp{}, fmt.Errorf("%w: %d bytes, want at least %d", errNotStamp, len(b), stampSize)
	}
	if [4]byte(b[:4]) != payloadMagic {
		return stamp{}, fmt.Errorf("%w: magic %q", errNotStamp, b[:4])
	}
	return stamp{
		Sent: time.Duration(binary.BigEndian.Uint64(b[4:])),
		Pub:  binary.BigEndian.Uint32(b[12:]),
		Seq:  binary.BigEndian.Uint64(b[16:]),
	}, nil
}
