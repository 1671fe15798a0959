package main

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

func TestMakeScenario(t *testing.T) {
	pubs, subs := []string{"pub0", "pub1"}, []string{"sub0", "sub1", "sub2"}
	tests := []struct {
		name             string
		wantPubs, wantSu int
	}{
		{"fanin", 2, 1},
		{"fanout", 1, 3},
		{"mesh", 2, 3},
	}
	for _, tt := range tests {
		sc, err := makeScenario(tt.name, pubs, subs)
		if err != nil {
			t.Fatalf("makeScenario(%q): %v", tt.name, err)
		}
		if len(sc.Publishers) != tt.wantPubs || len(sc.Subscribers) != tt.wantSu {
			t.Errorf("%s: %d → %d, want %d → %d", tt.name, len(sc.Publishers), len(sc.Subscribers), tt.wantPubs, tt.wantSu)
		}
	}
	if _, err := makeScenario("broadcast", pubs, subs); err == nil {
		t.Error("makeScenario(broadcast) succeeded, want an error")
	}
}

// deliver hands payloads to a receiver as paho would.
func deliver(r *receiver, payloads ...[]byte) {
	for _, p := range payloads {
		_, _ = r.onMessage(paho.PublishReceived{Packet: &paho.Publish{Topic: "bench/pub0/data", Payload: p}})
	}
}

func TestReceiverCountsLossDuplicatesAndStrays(t *testing.T) {
	var total counters
	base := time.Now().Add(-time.Second)
	r := newReceiver(base, 2, 100, &total) // 2 publishers × 100 messages
	msg := func(pub uint32, seq uint64) []byte {
		return stamp{Sent: 900 * time.Millisecond, Pub: pub, Seq: seq}.encode(256)
	}
	for seq := range uint64(100) {
		deliver(r, msg(0, seq))
	}
	for seq := range uint64(90) { // publisher 1 loses its last 10
		deliver(r, msg(1, seq))
	}
	deliver(r, msg(0, 5), msg(1, 5)) // two duplicates
	deliver(r, []byte("hello"))      // not a bench payload
	deliver(r, msg(2, 0))            // publisher not in the run
	deliver(r, msg(0, 100))          // sequence past the run

	if got := total.unique.Load(); got != 190 {
		t.Errorf("unique = %d, want 190", got)
	}
	if got := total.received.Load(); got != 195 {
		t.Errorf("received = %d, want 195", got)
	}
	if got := total.stray.Load(); got != 3 {
		t.Errorf("stray = %d, want 3", got)
	}
	res := result{Expected: 200, Received: total.received.Load(), Unique: total.unique.Load(), Stray: total.stray.Load()}
	if res.Lost() != 10 || res.Duplicates() != 2 {
		t.Errorf("Lost = %d, Duplicates = %d; want 10, 2", res.Lost(), res.Duplicates())
	}
	if len(r.lat) != 190 {
		t.Fatalf("%d latencies recorded, want one per unique delivery (190)", len(r.lat))
	}
	// Sent 0.9 s after base, received at least 1 s after it.
	if r.lat[0] < 100*time.Millisecond {
		t.Errorf("latency %v, want at least 100ms", r.lat[0])
	}
	if total.lastDelivery.Load() < int64(time.Second) {
		t.Errorf("last delivery at %v after base, want at least 1s", time.Duration(total.lastDelivery.Load()))
	}
}
