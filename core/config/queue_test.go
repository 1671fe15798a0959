package config

import "testing"

// TestParseConfigSubscriberQueue: ggcore.subscriberQueue bounds the
// broker's per-subscriber queues; absent means the broker's defaults.
func TestParseConfigSubscriberQueue(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const p = "ggcore.subscriberQueue"
	tests := []struct {
		name string
		doc  doc
		want SubscriberQueue
	}{
		{"absent: defaults", base, SubscriberQueue{}},
		{"bounds", base.set(p, map[string]any{"maxMessages": 50000, "maxBytes": 32 << 20, "maxTotalBytes": 1 << 30}),
			SubscriberQueue{MaxMessages: 50000, MaxBytes: 32 << 20, MaxTotalBytes: 1 << 30}},
		{"smallest", base.set(p, map[string]any{"maxMessages": 1, "maxBytes": 64 << 10, "maxTotalBytes": 1 << 20}),
			SubscriberQueue{MaxMessages: 1, MaxBytes: 64 << 10, MaxTotalBytes: 1 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.doc.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if c.GGCore.SubscriberQueue != tt.want {
				t.Errorf("GGCore.SubscriberQueue = %+v, want %+v", c.GGCore.SubscriberQueue, tt.want)
			}
		})
	}
}

func TestParseConfigSubscriberQueueProblems(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const p = "ggcore.subscriberQueue"
	tests := []struct {
		name         string
		value        any
		path, reason string
	}{
		{"not an object", 5, p, "object"},
		{"zero messages", map[string]any{"maxMessages": 0}, p + ".maxMessages", "0 is not a number of messages from 1"},
		{"too few bytes", map[string]any{"maxBytes": 1000}, p + ".maxBytes", "1000 is not a number of bytes from 65536 (64 KiB)"},
		{"total too small", map[string]any{"maxTotalBytes": 1000}, p + ".maxTotalBytes", "from 1048576 (1 MiB)"},
		{"queue above total", map[string]any{"maxBytes": 8 << 20, "maxTotalBytes": 4 << 20}, p + ".maxBytes", "more than maxTotalBytes"},
		{"string", map[string]any{"maxMessages": "many"}, p + ".maxMessages", "want a whole number, got string"},
		{"unknown field", map[string]any{"maxMessage": 5}, p + ".maxMessage", `did you mean "maxMessages"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(base.set(p, tt.value).bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}
