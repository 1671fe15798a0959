package spool

// The spool file is an append-only log of CRC-checked frames:
//
//	file   = header frame*
//	header = "GGSPOOL\x00" version:u32 crc(magic, version):u32        16 bytes
//	frame  = n:u32 crc(body):u32 crc(n, crc(body)):u32 body[n]        12+n bytes
//	body   = record*
//	record = 1 seq tlen plen topic[tlen] payload[plen]   a message
//	       | 2 count seq*count                            acknowledged messages
//	       | 3 count seq*count                            messages dropped to make room
//	       | 4 nextSeq droppedTotal                       counters (first frame of a compacted file)
//
// Fixed-width integers are little-endian, seq/tlen/plen/count/nextSeq/
// droppedTotal are uvarints (encoding/binary), crc is CRC-32C. The frame
// header carries its own CRC so that a damaged length is recognised as such.
//
// Every write to the file is exactly one frame followed by fdatasync, so a
// power cut can damage at most the last frame. Recovery replays the frames
// in order; at the first frame that does not check out it looks for any
// valid frame further on: if there is one the damage is in the middle of
// the file (corruption: Open fails and leaves the file alone), otherwise it
// is the torn tail of a write that never returned, and it is cut off.
//
// When the bytes of removed messages reach the size limit the file is
// compacted: the live records are copied verbatim into <path>.tmp after a
// counters record, which is fsynced and renamed over <path>.

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"strconv"
)

const (
	magic           = "GGSPOOL\x00"
	formatVersion   = 1
	headerSize      = 16
	frameHeaderSize = 12

	recAppend = 1
	recAck    = 2
	recDrop   = 3
	recMeta   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// fileHeader returns the 16-byte file header.
func fileHeader() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint32(b[12:], checksum(b[:12]))
	return b
}

// checkHeader reports what is wrong with a file header, or "" if nothing.
func checkHeader(b []byte) string {
	if len(b) < headerSize || string(b[:8]) != magic || binary.LittleEndian.Uint32(b[12:]) != checksum(b[:12]) {
		return "not a spool file (bad header)"
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return "unsupported spool format version " + strconv.FormatUint(uint64(v), 10)
	}
	return ""
}

// beginFrame appends room for a frame header to b.
func beginFrame(b []byte) []byte {
	return append(b, make([]byte, frameHeaderSize)...)
}

// sealFrame fills in the header of the frame that starts at f[0] and runs
// to the end of f.
func sealFrame(f []byte) {
	body := f[frameHeaderSize:]
	binary.LittleEndian.PutUint32(f[0:], uint32(len(body)))
	binary.LittleEndian.PutUint32(f[4:], checksum(body))
	binary.LittleEndian.PutUint32(f[8:], checksum(f[:8]))
}

// parseFrameHeader returns the body length and CRC of a frame header, and
// whether the header itself is intact.
func parseFrameHeader(h []byte) (n, crc uint32, ok bool) {
	n = binary.LittleEndian.Uint32(h[0:])
	crc = binary.LittleEndian.Uint32(h[4:])
	return n, crc, binary.LittleEndian.Uint32(h[8:]) == checksum(h[:8])
}

// appendMessage appends a message record to b and returns the length of
// the part before the topic.
func appendMessage(b []byte, seq uint64, topic string, payload []byte) ([]byte, int) {
	n := len(b)
	b = append(b, recAppend)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = binary.AppendUvarint(b, uint64(len(payload)))
	hdr := len(b) - n
	b = append(b, topic...)
	b = append(b, payload...)
	return b, hdr
}

// appendSeqs appends an ack or drop record naming seqs; nothing if seqs is empty.
func appendSeqs(b []byte, typ byte, seqs []uint64) []byte {
	if len(seqs) == 0 {
		return b
	}
	b = append(b, typ)
	b = binary.AppendUvarint(b, uint64(len(seqs)))
	for _, s := range seqs {
		b = binary.AppendUvarint(b, s)
	}
	return b
}

// appendMeta appends a counters record.
func appendMeta(b []byte, nextSeq, droppedTotal uint64) []byte {
	b = append(b, recMeta)
	b = binary.AppendUvarint(b, nextSeq)
	return binary.AppendUvarint(b, droppedTotal)
}

// record is one decoded record. Its slices point into the frame body and
// are valid only during the callback.
type record struct {
	typ     byte
	off     int    // recAppend: offset of the record in the body
	hdr     int    // recAppend: bytes before the topic
	seq     uint64 // recAppend
	topic   []byte // recAppend
	payload []byte // recAppend
	seqs    []uint64
	nextSeq uint64 // recMeta
	dropped uint64 // recMeta
}

var errTruncated = errors.New("truncated record")

// decodeBody calls fn for each record of a frame body, in order. It never
// panics and allocates only for ack and drop lists.
func decodeBody(body []byte, fn func(*record) error) error {
	var r record
	p := 0
	uv := func() (uint64, error) {
		v, n := binary.Uvarint(body[p:])
		if n <= 0 {
			return 0, errTruncated
		}
		p += n
		return v, nil
	}
	for p < len(body) {
		start := p
		r = record{typ: body[p], seqs: r.seqs[:0]}
		p++
		switch r.typ {
		case recAppend:
			seq, err := uv()
			if err != nil {
				return err
			}
			tlen, err := uv()
			if err != nil {
				return err
			}
			plen, err := uv()
			if err != nil {
				return err
			}
			rest := uint64(len(body) - p)
			if tlen > rest || plen > rest-tlen || tlen > maxField || plen > maxField {
				return errTruncated
			}
			r.off, r.hdr, r.seq = start, p-start, seq
			r.topic = body[p : p+int(tlen)]
			p += int(tlen)
			r.payload = body[p : p+int(plen)]
			p += int(plen)
		case recAck, recDrop:
			count, err := uv()
			if err != nil {
				return err
			}
			if count == 0 || count > uint64(len(body)-p) { // each seq takes at least one byte
				return errors.New("bad sequence count")
			}
			for range count {
				s, err := uv()
				if err != nil {
					return err
				}
				r.seqs = append(r.seqs, s)
			}
		case recMeta:
			var err error
			if r.nextSeq, err = uv(); err != nil {
				return err
			}
			if r.dropped, err = uv(); err != nil {
				return err
			}
		default:
			return errors.New("unknown record type " + strconv.Itoa(int(r.typ)))
		}
		if err := fn(&r); err != nil {
			return err
		}
	}
	return nil
}
