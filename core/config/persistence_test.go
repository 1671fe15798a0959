package config

import (
	"testing"
)

// TestParseConfigPersistence: ggcore.persistence bounds the broker's
// session store; absent means the broker's defaults (zero values).
func TestParseConfigPersistence(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	tests := []struct {
		name string
		doc  doc
		want Persistence
	}{
		{"absent: defaults", base, Persistence{}},
		{"bounds", base.set("ggcore.persistence", map[string]any{"maxBytes": 8 << 20, "maxMessages": 5000}),
			Persistence{MaxBytes: 8 << 20, MaxMessages: 5000}},
		{"smallest", base.set("ggcore.persistence", map[string]any{"maxBytes": 1 << 20, "maxMessages": 1}),
			Persistence{MaxBytes: 1 << 20, MaxMessages: 1}},
		{"disabled", base.set("ggcore.persistence", map[string]any{"disabled": true}), Persistence{Disabled: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.doc.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if c.GGCore.Persistence != tt.want {
				t.Errorf("GGCore.Persistence = %+v, want %+v", c.GGCore.Persistence, tt.want)
			}
		})
	}
}

func TestParseConfigPersistenceProblems(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const p = "ggcore.persistence"
	tests := []struct {
		name         string
		value        any
		path, reason string
	}{
		{"not an object", 5, p, "object"},
		{"too few bytes", map[string]any{"maxBytes": 1000}, p + ".maxBytes", "1000 is not a number of bytes from 1048576 (1 MiB)"},
		{"too many bytes", map[string]any{"maxBytes": int64(1) << 41}, p + ".maxBytes", "to 1099511627776 (1 TiB)"},
		{"zero messages", map[string]any{"maxMessages": 0}, p + ".maxMessages", "0 is not a number of messages from 1"},
		{"fractional", map[string]any{"maxMessages": 1.5}, p + ".maxMessages", "want a whole number"},
		{"string", map[string]any{"maxBytes": "64MiB"}, p + ".maxBytes", "want a whole number, got string"},
		{"disabled not a boolean", map[string]any{"disabled": "yes"}, p + ".disabled", "want true or false"},
		{"unknown field", map[string]any{"maxByte": 1 << 20}, p + ".maxByte", `did you mean "maxBytes"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(base.set(p, tt.value).bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}
