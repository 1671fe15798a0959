package main

import (
	"fmt"
	"strings"
	"time"
)

// report is everything one ggbench invocation prints.
type report struct {
	// Notes are printed above the tables, one bullet each.
	Notes   []string
	Results []result
	Memory  []memoryRow
	Soak    []soakResult
}

// markdown renders the report: the throughput/latency table (with each
// broker's CPU time per delivery), the ggcore/mosquitto and ggcore/mochi
// ratios, and the memory table.
func (r report) markdown() string {
	var b strings.Builder
	b.WriteString("## ggbench\n\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}

	if len(r.Results) > 0 {
		t := table{header: []string{"broker", "scenario", "QoS", "msgs/s", "p50", "p99", "lost", "CPU/msg", "load CPU/msg"}}
		for _, res := range r.Results {
			t.add(res.Broker, res.Scenario, fmt.Sprint(res.QoS), fmt.Sprintf("%.0f", res.Rate()),
				formatLatency(res.Latency.P50), formatLatency(res.Latency.P99), formatLost(res.Lost(), res.Expected),
				formatCPU(res.CPUPerDelivery()), formatCPU(res.LoadCPUPerDelivery()))
		}
		b.WriteString(t.String())
		var remarks []string
		for _, res := range r.Results {
			for _, line := range resultRemarks(res) {
				remarks = append(remarks, fmt.Sprintf("- %s %s QoS %d: %s\n", res.Broker, res.Scenario, res.QoS, line))
			}
		}
		if len(remarks) > 0 {
			b.WriteString("\n" + strings.Join(remarks, ""))
		}
	}

	for _, base := range []string{"mosquitto", "mochi"} {
		if ratios := ratioTable(r.Results, base); ratios != "" {
			fmt.Fprintf(&b, "\nggcore ÷ %s (throughput above 1, p99 and CPU per message below 1 favour ggcore):\n\n", base)
			b.WriteString(ratios)
		}
	}

	if len(r.Memory) > 0 {
		t := table{header: []string{"broker", "state", "VmRSS", "VmHWM", "RssAnon", "RssFile"}}
		for _, m := range r.Memory {
			t.add(m.Broker, m.State, formatMiB(m.Mem.RSS), formatMiB(m.Mem.Peak), formatMiB(m.Mem.Anon), formatMiB(m.Mem.File))
		}
		b.WriteString("\n")
		b.WriteString(t.String())
	}

	if len(r.Soak) > 0 {
		t := table{header: []string{"soak", "devices", "duration", "published", "delivered", "lost", "VmRSS start", "VmRSS peak", "VmRSS end", "VmHWM"}}
		for _, s := range r.Soak {
			t.add(s.Broker, fmt.Sprint(s.Devices), s.Duration.String(), fmt.Sprint(s.Published), fmt.Sprint(s.Delivered),
				formatLost(s.Lost(), s.Published), formatMiB(s.Start.RSS), formatMiB(s.Peak.RSS), formatMiB(s.End.RSS), formatMiB(s.End.Peak))
		}
		b.WriteString("\n")
		b.WriteString(t.String())
		for _, s := range r.Soak {
			if s.Dupes > 0 || s.PubErrors > 0 {
				fmt.Fprintf(&b, "\n- %s soak: %d duplicate deliveries, %d failed publishes\n", s.Broker, s.Dupes, s.PubErrors)
			}
			for _, e := range s.Errors {
				fmt.Fprintf(&b, "- %s soak: error: %s\n", s.Broker, e)
			}
		}
	}
	return b.String()
}

// resultRemarks lists what a reader must know about a run beyond the
// table's columns: duplicates, stray messages, publish errors, client
// errors.
func resultRemarks(r result) []string {
	var out []string
	if r.QoS > 0 && r.Lost() > 0 {
		out = append(out, fmt.Sprintf("%d deliveries lost although the broker acknowledged every PUBLISH (QoS 1 must lose none)", r.Lost()))
	}
	if n := r.Duplicates(); n > 0 {
		out = append(out, fmt.Sprintf("%d duplicate deliveries", n))
	}
	if r.Stray > 0 {
		out = append(out, fmt.Sprintf("%d deliveries that were not bench payloads", r.Stray))
	}
	if r.PubErrors > 0 {
		out = append(out, fmt.Sprintf("%d failed publishes", r.PubErrors))
	}
	for _, e := range r.Errors {
		out = append(out, "error: "+e)
	}
	return out
}

// ratioTable pairs each ggcore run with the run of broker base of the
// same scenario and QoS; it returns "" when there is no pair.
func ratioTable(results []result, baseBroker string) string {
	type key struct {
		scenario string
		qos      byte
	}
	base := make(map[key]result)
	for _, r := range results {
		if r.Broker == baseBroker {
			base[key{r.Scenario, r.QoS}] = r
		}
	}
	t := table{header: []string{"scenario", "QoS", "msgs/s ratio", "p99 ratio", "CPU/msg ratio"}}
	for _, r := range results {
		m, ok := base[key{r.Scenario, r.QoS}]
		if r.Broker != "ggcore" || !ok {
			continue
		}
		t.add(r.Scenario, fmt.Sprint(r.QoS), formatRatio(r.Rate(), m.Rate()),
			formatRatio(float64(r.Latency.P99), float64(m.Latency.P99)),
			formatRatio(float64(r.CPUPerDelivery()), float64(m.CPUPerDelivery())))
	}
	if len(t.rows) == 0 {
		return ""
	}
	return t.String()
}

// table is a Markdown table with columns padded to line up.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

// String renders the table; numeric-looking columns are right-aligned.
func (t *table) String() string {
	width := make([]int, len(t.header))
	for i, h := range t.header {
		width[i] = len([]rune(h))
	}
	for _, row := range t.rows {
		for i, c := range row {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 && t.numeric(i) {
				fmt.Fprintf(&b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(&b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(t.header)
	b.WriteString("|")
	for i := range t.header {
		dashes := strings.Repeat("-", width[i])
		if i > 0 && t.numeric(i) {
			dashes = dashes[:len(dashes)-1] + ":"
		}
		fmt.Fprintf(&b, " %s |", dashes)
	}
	b.WriteString("\n")
	for _, row := range t.rows {
		line(row)
	}
	return b.String()
}

// numeric reports whether every cell of column i starts with a digit.
func (t *table) numeric(i int) bool {
	for _, row := range t.rows {
		if row[i] == "" || row[i][0] < '0' || row[i][0] > '9' {
			return false
		}
	}
	return len(t.rows) > 0
}

// formatLatency prints a latency in milliseconds with useful precision.
func formatLatency(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f s", ms/1000)
	}
}

// formatCPU prints a broker's CPU time per delivery in microseconds, "-"
// when unknown.
func formatCPU(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}

// formatLost prints lost deliveries with their share of the expected.
func formatLost(lost, expected int64) string {
	if lost == 0 || expected == 0 {
		return fmt.Sprint(lost)
	}
	return fmt.Sprintf("%d (%.2f%%)", lost, 100*float64(lost)/float64(expected))
}

// formatRatio prints a/b, or "-" when b is zero.
func formatRatio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// formatMiB prints a byte count in MiB.
func formatMiB(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
