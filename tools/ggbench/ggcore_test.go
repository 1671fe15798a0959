package main

import "testing"

func TestParseReady(t *testing.T) {
	tests := []struct {
		name, line, addr string
		ok               bool
	}{
		{"ready line",
			`time=2026-11-26T19:25:13.963Z level=INFO msg="ggcore ready" addr=127.0.0.1:37293 group=g1 devices=8 subscriptions=16 tls_profile=strict`,
			"127.0.0.1:37293", true},
		{"quoted addr", `level=INFO msg="ggcore ready" addr="[::1]:8883"`, "[::1]:8883", true},
		{"other message", `level=INFO msg="mochi mqtt server started" addr=127.0.0.1:1`, "", false},
		{"ready without addr", `level=INFO msg="ggcore ready" group=g1`, "", false},
		{"ready with empty addr", `level=INFO msg="ggcore ready" addr= group=g1`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, ok := parseReady(tt.line)
			if addr != tt.addr || ok != tt.ok {
				t.Errorf("parseReady = %q, %v; want %q, %v", addr, ok, tt.addr, tt.ok)
			}
		})
	}
}

func TestBrokerStats(t *testing.T) {
	line := `time=2026-11-26T19:25:24.199Z level=INFO msg="broker stats" clients=0 refused=0 unrouted=0 dropped=3058 inflight_dropped=81`
	if got, want := brokerStats(line), "clients=0 refused=0 unrouted=0 dropped=3058 inflight_dropped=81"; got != want {
		t.Errorf("brokerStats = %q, want %q", got, want)
	}
	if got := brokerStats(`msg="ggcore stopped"`); got != "" {
		t.Errorf("brokerStats of another line = %q, want empty", got)
	}
}
