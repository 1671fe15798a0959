package main

import (
	"strings"
	"testing"
	"time"
)

func TestTableAlignsColumns(t *testing.T) {
	tb := table{header: []string{"broker", "msgs/s", "p99"}}
	tb.add("mosquitto", "104911", "8.96 ms")
	tb.add("ggcore", "25286", "-")
	want := "" +
		"| broker    | msgs/s | p99     |\n" +
		"| --------- | -----: | ------- |\n" +
		"| mosquitto | 104911 | 8.96 ms |\n" +
		"| ggcore    |  25286 | -       |\n"
	if got := tb.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestFormatters(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"latency zero means no data", formatLatency(0), "-"},
		{"latency below 10 ms", formatLatency(2126 * time.Microsecond), "2.13 ms"},
		{"latency below 1 s", formatLatency(375400 * time.Microsecond), "375.4 ms"},
		{"latency in seconds", formatLatency(1300 * time.Millisecond), "1.30 s"},
		{"nothing lost", formatLost(0, 80000), "0"},
		{"lost with share", formatLost(201, 80000), "201 (0.25%)"},
		{"ratio", formatRatio(45442, 41679), "1.09"},
		{"ratio without baseline", formatRatio(1, 0), "-"},
		{"MiB", formatMiB(67 << 20), "67.0 MiB"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestReportMarkdown(t *testing.T) {
	res := func(broker string, qos byte, received, unique int64, elapsed time.Duration, p99 time.Duration) result {
		return result{Broker: broker, Scenario: "mesh", QoS: qos, Expected: 1000, Received: received,
			Unique: unique, Elapsed: elapsed, Latency: latencySummary{P50: time.Millisecond, P99: p99},
			BrokerCPU: time.Duration(received) * 10 * time.Microsecond, LoadCPU: time.Duration(received) * 40 * time.Microsecond}
	}
	r := report{
		Notes: []string{"command: ggbench --messages 250"},
		Results: []result{
			res("mosquitto", 1, 1000, 1000, time.Second, 4*time.Millisecond),
			res("ggcore", 1, 990, 990, 500*time.Millisecond, 2*time.Millisecond),
		},
		Memory: []memoryRow{{"ggcore", "1000 connected", memory{RSS: 64 << 20, Peak: 70 << 20}}},
	}
	md := r.markdown()
	for _, want := range []string{
		"- command: ggbench --messages 250\n",
		"| broker    | scenario | QoS | msgs/s |     p50 |     p99 |       lost | CPU/msg | load CPU/msg |\n",
		"| mosquitto | mesh     |   1 |   1000 | 1.00 ms | 4.00 ms |          0 | 10.0 µs |      40.0 µs |\n",
		"| ggcore    | mesh     |   1 |   1980 | 1.00 ms | 2.00 ms | 10 (1.00%) | 10.0 µs |      40.0 µs |\n",
		"\n- ggcore mesh QoS 1: 10 deliveries lost although the broker acknowledged every PUBLISH",
		"| mesh     |   1 |         1.98 |      0.50 |          1.00 |", // ratio row: 1980/1000, 2 ms/4 ms, 10 µs/10 µs
		"| ggcore | 1000 connected | 64.0 MiB | 70.0 MiB |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestRatioTableNeedsBothBrokers(t *testing.T) {
	only := []result{{Broker: "ggcore", Scenario: "mesh", QoS: 0, Received: 10, Elapsed: time.Second}}
	if got := ratioTable(only, "mosquitto"); got != "" {
		t.Errorf("ratioTable without a mosquitto run = %q, want empty", got)
	}
}

func TestResultAccounting(t *testing.T) {
	r := result{Expected: 100, Received: 105, Unique: 95, Stray: 2, Elapsed: 2 * time.Second}
	if got := r.Lost(); got != 5 {
		t.Errorf("Lost = %d, want 5", got)
	}
	if got := r.Duplicates(); got != 8 {
		t.Errorf("Duplicates = %d, want 8", got)
	}
	if got := r.Rate(); got != 51.5 {
		t.Errorf("Rate = %v, want 51.5 (stray messages not counted)", got)
	}
	if got := (result{Received: 5}).Rate(); got != 0 {
		t.Errorf("Rate without elapsed time = %v, want 0", got)
	}
}

func TestParseCPUTime(t *testing.T) {
	// A command name with a space and a parenthesis; utime 250, stime 50.
	stat := "4242 (gg core) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 100 0 0"
	if got := parseCPUTime(stat); got != 3*time.Second {
		t.Errorf("parseCPUTime = %v, want 3s", got)
	}
	if got := parseCPUTime("garbage"); got != -1 {
		t.Errorf("parseCPUTime of garbage = %v, want -1", got)
	}
}
