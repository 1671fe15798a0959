package broker

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// When a queue is full, queued QoS 0 messages make room for newer ones
// before a QoS 1 message is dropped; every drop is counted.
func TestFullQueueDropsOldestQoS0First(t *testing.T) {
	b := &Broker{limits: Limits{QueueMessages: 3}.withDefaults(), drops: &drops{log: slog.New(slog.NewTextHandler(io.Discard, nil))}}
	b.srv = mqtt.New(&mqtt.Options{Logger: b.drops.log})
	b.queues = newQueues(b)
	q := b.queues.getOrCreate("c")
	q.connecting = true // a connection on its way: queue, no writer yet
	for _, m := range []struct {
		topic string
		qos   byte
	}{{"a", 0}, {"b", 1}, {"c", 0}, {"d", 1}, {"e", 1}, {"f", 1}} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.qos}, TopicName: m.topic}
		if !b.queues.deliver("c", &pk, packets.Subscription{Qos: 2}, nil, false) {
			t.Fatalf("%s not taken by the queue", m.topic)
		}
	}
	var topics []string
	for i := q.head; i < len(q.entries); i++ {
		if !q.entries[i].dead {
			topics = append(topics, q.entries[i].msg.TopicName)
		}
	}
	// d evicts a, e evicts c, f finds no QoS 0 message to evict.
	if fmt.Sprint(topics) != "[b d e]" || b.drops.client("c") != 3 || q.live != 3 || q.qos0 != 0 {
		t.Fatalf("queue %v, live %d, QoS 0 %d, dropped %d; want [b d e], 3, 0, 3", topics, q.live, q.qos0, b.drops.client("c"))
	}
	if got, want := b.queues.bytes.Load(), q.bytes; got != want || want != 3*(entryOverhead+1) {
		t.Fatalf("queued bytes %d (queue %d), want %d", got, want, 3*(entryOverhead+1))
	}
}

func TestLimitsWithDefaults(t *testing.T) {
	got := Limits{QueueMessages: 5, MaxInflight: 7}.withDefaults()
	want := DefaultLimits()
	want.QueueMessages, want.MaxInflight = 5, 7
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}
