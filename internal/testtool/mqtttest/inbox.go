package mqtttest

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// Message is one message a client received.
type Message struct {
	Topic   string
	Payload string
	QoS     byte
	Retain  bool
}

func (m Message) String() string {
	return fmt.Sprintf("%s %q (qos %d, retain %t)", m.Topic, m.Payload, m.QoS, m.Retain)
}

// Inbox holds what a subscriber received, in order, without bound: a
// test that floods a subscriber loses nothing to a full buffer. Its
// methods wait up to testtool.Timeout for what must arrive.
type Inbox struct {
	name    string
	discard atomic.Bool // Put drops what it is given
	mu      sync.Mutex
	queue   []Message
	ready   chan struct{} // has a token while queue may be non-empty
}

// NewInbox returns an empty inbox; name says whose it is in failures.
func NewInbox(name string) *Inbox {
	return &Inbox{name: name, ready: make(chan struct{}, 1)}
}

// Name says whose inbox it is.
func (b *Inbox) Name() string { return b.name }

// Discard makes the inbox drop what arrives from now on: a benchmark
// that counts messages itself does not pay for keeping them.
func (b *Inbox) Discard() { b.discard.Store(true) }

// Put adds m at the end.
func (b *Inbox) Put(m Message) {
	if b.discard.Load() {
		return
	}
	b.mu.Lock()
	b.queue = append(b.queue, m)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// TryNext takes the first message, waiting up to timeout for one.
func (b *Inbox) TryNext(timeout time.Duration) (Message, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		if len(b.queue) > 0 {
			m := b.queue[0]
			b.queue = b.queue[1:]
			b.mu.Unlock()
			return m, true
		}
		b.mu.Unlock()
		select {
		case <-b.ready:
		case <-deadline.C:
			return Message{}, false
		}
	}
}

// Next takes the first message; it fails the test when none comes
// within testtool.Timeout.
func (b *Inbox) Next(t testing.TB) Message {
	t.Helper()
	m, ok := b.TryNext(testtool.Timeout)
	if !ok {
		t.Fatalf("%s: no message within %v", b.name, testtool.Timeout)
	}
	return m
}

// Expect takes messages until one on topic with payload, which it
// returns; the others are logged and dropped. It fails the test when
// that message does not come within testtool.Timeout.
func (b *Inbox) Expect(t testing.TB, topic, payload string) Message {
	t.Helper()
	deadline := time.Now().Add(testtool.Timeout)
	for {
		m, ok := b.TryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("%s: no message %s %q within %v", b.name, topic, payload, testtool.Timeout)
		}
		if m.Topic == topic && m.Payload == payload {
			return m
		}
		t.Logf("%s: ignoring %v while waiting for %s %q", b.name, m, topic, payload)
	}
}

// ReceiveUntil takes messages until one with payload control arrives,
// then for testtool.Settle longer, and returns them all in order. It
// fails the test if control does not arrive within testtool.Timeout.
//
// The control message is how a test shows that something did not
// arrive: sent after the messages that must not be delivered, on a path
// that delivers in order, it would come after them.
func (b *Inbox) ReceiveUntil(t testing.TB, control string) []Message {
	t.Helper()
	var got []Message
	deadline := time.Now().Add(testtool.Timeout)
	for {
		m, ok := b.TryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("%s: control message %q not delivered within %v; received: %v", b.name, control, testtool.Timeout, got)
		}
		got = append(got, m)
		if m.Payload == control {
			break
		}
	}
	settled := time.Now().Add(testtool.Settle)
	for {
		m, ok := b.TryNext(time.Until(settled))
		if !ok {
			return got
		}
		got = append(got, m)
	}
}

// ExpectNothing fails the test if a message arrives within wait.
func (b *Inbox) ExpectNothing(t testing.TB, wait time.Duration) {
	t.Helper()
	if m, ok := b.TryNext(wait); ok {
		t.Errorf("%s received %v; want nothing", b.name, m)
	}
}

// AssertPayloads fails the test unless got holds exactly the payloads
// want, in order; who names the receiver.
func AssertPayloads(t testing.TB, who string, got []Message, want ...string) {
	t.Helper()
	var payloads []string
	for _, m := range got {
		payloads = append(payloads, m.Payload)
	}
	if strings.Join(payloads, "\x00") != strings.Join(want, "\x00") {
		t.Errorf("%s received %v; want exactly the payloads %q", who, got, want)
	}
}
