package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// dropLogInterval is how often one subscriber's drops are logged.
const dropLogInterval = time.Second

// drops counts every message the broker could not deliver to a
// subscriber (its queue full, the broker's queues at their bound, a
// message larger than the subscriber takes, an offline session's queue
// full), in total and per subscriber, and logs each subscriber's drops at
// most once per dropLogInterval with the count since its last line, so
// that an overloaded gateway neither loses messages silently nor floods
// its log.
type drops struct {
	log   *slog.Logger
	total atomic.Int64

	mu        sync.Mutex
	perClient map[string]*dropRecord
}

type dropRecord struct {
	total    int64 // since the subscriber's first drop
	unlogged int64
	logged   time.Time
}

// add counts one message for client id dropped for reason.
func (d *drops) add(id, reason, topic string, qos byte) {
	d.total.Add(1)
	now := time.Now()
	d.mu.Lock()
	if d.perClient == nil {
		d.perClient = make(map[string]*dropRecord)
	}
	r := d.perClient[id]
	if r == nil {
		r = &dropRecord{}
		d.perClient[id] = r
	}
	r.total++
	r.unlogged++
	var n, total int64
	if now.Sub(r.logged) >= dropLogInterval {
		n, total, r.unlogged, r.logged = r.unlogged, r.total, 0, now
	}
	d.mu.Unlock()
	if n > 0 {
		d.log.Warn("messages for a subscriber dropped", "client", id, "reason", reason, "dropped", n,
			"dropped_total", total, "topic", topic, "qos", qos)
	}
}

// client returns how many messages for client id were dropped since the
// broker started (or since the device left the group).
func (d *drops) client(id string) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r := d.perClient[id]; r != nil {
		return r.total
	}
	return 0
}

// flush logs client id's drops not yet logged; forget also forgets its
// count (the device left the group).
func (d *drops) flush(id string, forget bool) {
	d.mu.Lock()
	r := d.perClient[id]
	var n, total int64
	if r != nil {
		n, total, r.unlogged = r.unlogged, r.total, 0
		if forget {
			delete(d.perClient, id)
		}
	}
	d.mu.Unlock()
	if n > 0 {
		d.log.Warn("messages for a subscriber dropped", "client", id, "dropped", n, "dropped_total", total)
	}
}
