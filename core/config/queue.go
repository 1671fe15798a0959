package config

import "encoding/json"

// SubscriberQueue is ggcore.subscriberQueue: the bounds of the local
// broker's queues of messages not yet sent to a subscriber. Zero values
// mean the broker's defaults (100,000 messages and 32 MiB per subscriber,
// 256 MiB for all of them together).
type SubscriberQueue struct {
	// MaxMessages bounds one subscriber's queue: 1 to 10,000,000.
	MaxMessages int64 `json:"maxMessages,omitempty"`
	// MaxBytes bounds one subscriber's queue: 64 KiB to 64 GiB.
	MaxBytes int64 `json:"maxBytes,omitempty"`
	// MaxTotalBytes bounds all subscribers' queues together: 1 MiB to
	// 1 TiB. Publishers are slowed near it; the queues of sessions that
	// are not connected take at most half of it.
	MaxTotalBytes int64 `json:"maxTotalBytes,omitempty"`
}

// subscriberQueue walks ggcore.subscriberQueue.
func (w *walker) subscriberQueue(path string, raw json.RawMessage, q *SubscriberQueue) {
	bounded := func(lo, hi int64, what string, dst *int64) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			var n int64
			if !w.integer(p, v, &n) {
				return
			}
			if n < lo || n > hi {
				w.fail(p, "%d is not %s", n, what)
				return
			}
			*dst = n
		}
	}
	w.object(path, raw, []rule{
		{"maxMessages", bounded(1, 10_000_000, "a number of messages from 1 to 10000000", &q.MaxMessages)},
		{"maxBytes", bounded(64<<10, 64<<30, "a number of bytes from 65536 (64 KiB) to 68719476736 (64 GiB)", &q.MaxBytes)},
		{"maxTotalBytes", bounded(1<<20, 1<<40, "a number of bytes from 1048576 (1 MiB) to 1099511627776 (1 TiB)", &q.MaxTotalBytes)},
	})
	if q.MaxTotalBytes > 0 && q.MaxBytes > q.MaxTotalBytes {
		w.fail(path+".maxBytes", "%d is more than maxTotalBytes (%d): one subscriber's queue cannot exceed all of them together", q.MaxBytes, q.MaxTotalBytes)
	}
}
