package main

import (
	"strings"
	"testing"
	"time"
)

func TestRingAndPairRoutes(t *testing.T) {
	arns := map[string]string{"a": "arn:a", "b": "arn:b", "c": "arn:c"}
	ring, err := ringRoutes(arns, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	want := []subscription{
		{ID: "soak-a", Source: "arn:a", Subject: "soak/a/#", Target: "arn:b"},
		{ID: "soak-b", Source: "arn:b", Subject: "soak/b/#", Target: "arn:c"},
		{ID: "soak-c", Source: "arn:c", Subject: "soak/c/#", Target: "arn:a"},
	}
	for i := range want {
		if ring[i] != want[i] {
			t.Errorf("ring[%d] = %+v, want %+v", i, ring[i], want[i])
		}
	}
	pairs, err := pairRoutes(arns, []string{"a", "b"}, []string{"b", "c"})
	if err != nil || len(pairs) != 2 || pairs[0].Target != "arn:b" || pairs[1].Source != "arn:b" || pairs[1].Target != "arn:c" {
		t.Errorf("pairRoutes = %+v, %v", pairs, err)
	}
	if _, err := ringRoutes(arns, []string{"a", "zz"}); err == nil {
		t.Error("ringRoutes with an unknown device: no error")
	}
}

func TestSoakReport(t *testing.T) {
	r := report{Soak: []soakResult{{Broker: "ggcore", Devices: 1000, Duration: 10 * time.Minute, Published: 600000, Delivered: 599990,
		Start: memory{RSS: 40 << 20}, Peak: memory{RSS: 44 << 20}, End: memory{RSS: 42 << 20, Peak: 45 << 20}, Dupes: 3}}}
	md := r.markdown()
	for _, want := range []string{"| ggcore |", "10m0s", "600000", "10 (0.00%)", "40.0 MiB", "44.0 MiB", "42.0 MiB", "45.0 MiB", "3 duplicate deliveries"} {
		if !strings.Contains(md, want) {
			t.Errorf("soak report lacks %q:\n%s", want, md)
		}
	}
}
