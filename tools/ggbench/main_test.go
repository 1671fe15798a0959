package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsDefaults(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(): %v", err)
	}
	if o.pubs != 4 || o.subs != 4 || o.size != 256 || o.devices != 1000 || o.mosquitto != "/usr/sbin/mosquitto" {
		t.Errorf("defaults = %+v", o)
	}
	if !slices.Equal(o.brokers, []string{"mosquitto", "mochi", "ggcore"}) || !slices.Equal(o.qos, []string{"0", "1"}) ||
		!slices.Equal(o.scenarios, scenarioNames) {
		t.Errorf("default lists = %v %v %v", o.brokers, o.qos, o.scenarios)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--brokers", "ggcore", "--qos", " 1 ", "--scenarios", "mesh,fanin",
		"--messages", "10", "--timeout", "5s", "--out", "bench.md"}, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags: %v", err)
	}
	if !slices.Equal(o.brokers, []string{"ggcore"}) || !slices.Equal(o.qos, []string{"1"}) ||
		!slices.Equal(o.scenarios, []string{"mesh", "fanin"}) || o.messages != 10 || o.timeout != 5*time.Second || o.out != "bench.md" {
		t.Errorf("parsed = %+v", o)
	}
}

func TestParseFlagsRejects(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--brokers", "emqx"}, `--brokers: "emqx"`},
		{[]string{"--qos", "2"}, `--qos: "2"`},
		{[]string{"--scenarios", "ring"}, `--scenarios: unknown scenario "ring"`},
		{[]string{"--size", "10"}, "--size: 10 is below 24"},
		{[]string{"--pubs", "0"}, "--pubs: 0 is below 1"},
		{[]string{"--devices", "-1"}, "--devices: -1 is below 0"},
		{[]string{"--rounds", "0"}, "--rounds: 0 is below 1"},
		{[]string{"--drain", "0s"}, "--drain must be positive"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		var stderr strings.Builder
		if _, err := parseFlags(tt.args, &stderr); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseFlags(%q) error = %v, want one containing %q", tt.args, err, tt.want)
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("parseFlags(%q) told the user %q, want it to name %q", tt.args, stderr.String(), tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	if got := names("pub", 3); !slices.Equal(got, []string{"pub0", "pub1", "pub2"}) {
		t.Errorf("names(pub, 3) = %v", got)
	}
	if got := names("dev", 1000); got[999] != "dev999" || len(got) != 1000 {
		t.Errorf("names(dev, 1000) ends %q", got[len(got)-1])
	}
}
