package spool

import "sort"

// entry locates one message in the spool file.
type entry struct {
	seq  uint64
	off  int64  // file offset of the record
	tlen uint32 // topic length
	plen uint32 // payload length
	hdr  uint8  // record bytes before the topic
	dead bool   // acked or dropped
}

// recLen is the length of the record in the file.
func (e *entry) recLen() int64 { return int64(e.hdr) + int64(e.tlen) + int64(e.plen) }

// size is the accounted size of the message (see Stats.Bytes).
func (e *entry) size() int64 { return int64(e.tlen) + int64(e.plen) + Overhead }

// index is the in-memory FIFO of the messages in the spool: entries in
// seq order, with removed entries marked dead until the head passes them
// or they are squeezed out. It holds no topics or payloads.
type index struct {
	e     []entry // e[head:] is the queue; e[head] is live unless the queue is empty
	head  int
	dead  int   // dead entries in e[head:]
	live  int   // live entries
	bytes int64 // Σ size() of live entries
	disk  int64 // Σ recLen() of live entries
}

// push appends e; e.seq must be larger than any seq pushed before.
func (x *index) push(e entry) {
	x.e = append(x.e, e)
	x.live++
	x.bytes += e.size()
	x.disk += e.recLen()
}

// remove removes the live entry seq and returns it.
func (x *index) remove(seq uint64) (entry, bool) {
	q := x.e[x.head:]
	i := sort.Search(len(q), func(i int) bool { return q[i].seq >= seq })
	if i == len(q) || q[i].seq != seq || q[i].dead {
		return entry{}, false
	}
	e := q[i]
	q[i].dead = true
	x.dead++
	x.live--
	x.bytes -= e.size()
	x.disk -= e.recLen()
	x.tidy()
	return e, true
}

// popOldest removes the oldest live entry and returns it.
func (x *index) popOldest() (entry, bool) {
	if x.live == 0 {
		return entry{}, false
	}
	return x.remove(x.e[x.head].seq)
}

// tidy advances the head past dead entries and squeezes the dead ones out
// once they outnumber the live ones, so that memory and Peek's scan stay
// proportional to the live entries.
func (x *index) tidy() {
	for x.head < len(x.e) && x.e[x.head].dead {
		x.head++
		x.dead--
	}
	if x.live == 0 {
		x.e, x.head, x.dead = x.e[:0], 0, 0
		return
	}
	if garbage := x.head + x.dead; garbage > 256 && garbage > x.live {
		dst := x.e[:0]
		if cap(x.e) > 4*x.live+1024 { // release memory after a large backlog
			dst = make([]entry, 0, 2*x.live)
		}
		for _, e := range x.e[x.head:] {
			if !e.dead {
				dst = append(dst, e)
			}
		}
		clear(x.e[len(dst):])
		x.e, x.head, x.dead = dst, 0, 0
	}
}

// each calls fn for the live entries in order until fn returns false.
func (x *index) each(fn func(*entry) bool) {
	for i := x.head; i < len(x.e); i++ {
		if !x.e[i].dead && !fn(&x.e[i]) {
			return
		}
	}
}
