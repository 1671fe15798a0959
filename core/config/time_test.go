package config

import (
	"reflect"
	"testing"
)

// TestParseConfigTime: ggcore.time says whether ggcore may set the clock
// and which NTP servers it asks; absent, it leaves the clock alone.
func TestParseConfigTime(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	tests := []struct {
		name string
		doc  doc
		want Time
	}{
		{"absent: the clock is left alone", base, Time{}},
		{"setClock alone: the control plane's Date", base.set("ggcore.time", map[string]any{"setClock": true}), Time{SetClock: true}},
		{"servers as host, host:port, IPv6",
			base.set("ggcore.time", map[string]any{"setClock": true,
				"ntpServers": []any{"pool.ntp.org", "10.0.2.2:1123", "2001:db8::1", "[2001:db8::2]:123"}}),
			Time{SetClock: true, NTPServers: []string{"pool.ntp.org", "10.0.2.2:1123", "2001:db8::1", "[2001:db8::2]:123"}}},
		{"measure only", base.set("ggcore.time", map[string]any{"ntpServers": []any{"ntp.example"}}),
			Time{NTPServers: []string{"ntp.example"}}},
		{"empty list", base.set("ggcore.time", map[string]any{"ntpServers": []any{}}), Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.doc.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.GGCore.Time, tt.want) {
				t.Errorf("GGCore.Time = %#v, want %#v", c.GGCore.Time, tt.want)
			}
		})
	}
}

func TestParseConfigTimeProblems(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const p = "ggcore.time"
	tests := []struct {
		name         string
		value        any
		path, reason string
	}{
		{"not an object", true, p, "want a JSON object"},
		{"setClock not a boolean", map[string]any{"setClock": "yes"}, p + ".setClock", "want true or false"},
		{"servers not a list", map[string]any{"ntpServers": "pool.ntp.org"}, p + ".ntpServers", "want a JSON array"},
		{"a scheme", map[string]any{"ntpServers": []any{"pool.ntp.org", "ntp://x"}}, p + ".ntpServers[1]", "want an NTP server as HOST or HOST:PORT"},
		{"port zero", map[string]any{"ntpServers": []any{"h:0"}}, p + ".ntpServers[0]", `port "0" is not 1-65535`},
		{"empty port", map[string]any{"ntpServers": []any{"h:"}}, p + ".ntpServers[0]", `port "" is not 1-65535`},
		{"empty", map[string]any{"ntpServers": []any{""}}, p + ".ntpServers[0]", "empty: want a host name or IP address"},
		{"a number", map[string]any{"ntpServers": []any{123}}, p + ".ntpServers[0]", "want a string, got number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(base.set(p, tt.value).bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}
