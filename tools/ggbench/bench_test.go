package main

import (
	"testing"
	"time"
)

// TestMedianRun: a row is one whole run, the one with the median rate,
// and a loss in any round is named even when another run is reported.
func TestMedianRun(t *testing.T) {
	run := func(received int64, elapsed time.Duration, unique int64) result {
		return result{Broker: "ggcore", Scenario: "fanin", QoS: 1, Expected: 1000, Received: received,
			Unique: unique, Elapsed: elapsed}
	}
	tests := []struct {
		name     string
		runs     []result
		wantRate float64
		wantLost string
	}{
		{"one", []result{run(1000, time.Second, 1000)}, 1000, ""},
		{"three", []result{run(1000, time.Second, 1000), run(1000, 500*time.Millisecond, 990), run(1000, 2*time.Second, 1000)},
			1000, "ggcore fanin QoS 1: round 2 lost 10 (1.00%)"},
		{"even count takes the lower middle", []result{run(1000, time.Second, 1000), run(1000, 500*time.Millisecond, 1000)}, 1000, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := medianRun(tt.runs).Rate(); got != tt.wantRate {
				t.Errorf("medianRun rate = %.0f, want %.0f", got, tt.wantRate)
			}
			if got := lostNote(tt.runs); got != tt.wantLost {
				t.Errorf("lostNote = %q, want %q", got, tt.wantLost)
			}
		})
	}
}
