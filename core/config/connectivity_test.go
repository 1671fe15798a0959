package config

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestParseConfigConnectivity: ggcore.connectivity is the list of
// HOST:PORT the core reports to the control plane instead of its own
// addresses; each entry is kept as written.
func TestParseConfigConnectivity(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	tests := []struct {
		name string
		doc  doc
		want []string
	}{
		{"absent: the core reports its own addresses", base, nil},
		{"null is absent", base.set("ggcore.connectivity", nil), nil},
		{"IPv4, host name and bracketed IPv6",
			base.set("ggcore.connectivity", []any{"192.0.2.10:8883", "gw.example:443", "[2001:db8::1]:8883"}),
			[]string{"192.0.2.10:8883", "gw.example:443", "[2001:db8::1]:8883"}},
		{"port bounds", base.set("ggcore.connectivity", []any{"a.example:1", "b.example:65535"}),
			[]string{"a.example:1", "b.example:65535"}},
		{"trailing dot, underscore", base.set("ggcore.connectivity", []any{"gw.example.:8883", "my_gw:8883"}),
			[]string{"gw.example.:8883", "my_gw:8883"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(tt.doc.bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.GGCore.Connectivity, tt.want) {
				t.Errorf("GGCore.Connectivity = %#v, want %#v", c.GGCore.Connectivity, tt.want)
			}
		})
	}
}

func TestParseConfigConnectivityProblems(t *testing.T) {
	base := parseDoc(t, goldenConfig)
	const p = "ggcore.connectivity"
	tests := []struct {
		name         string
		value        any
		path, reason string
	}{
		{"not a list", "192.0.2.10:8883", p, "want a JSON array, got string"},
		{"object", map[string]any{"host": "gw"}, p, "want a JSON array, got object"},
		{"no port", []any{"nohost"}, p + "[0]", `"nohost": want HOST:PORT`},
		{"port zero", []any{"192.0.2.10:8883", "h:0"}, p + "[1]", `port "0" is not 1-65535`},
		{"port too big", []any{"h:70000"}, p + "[0]", `port "70000" is not 1-65535`},
		{"port not a number", []any{"h:mqtt"}, p + "[0]", `port "mqtt" is not 1-65535`},
		{"signed port", []any{"h:+80"}, p + "[0]", `port "+80" is not 1-65535`},
		{"empty list", []any{}, p, "empty: want at least one HOST:PORT"},
		{"empty port", []any{"h:"}, p + "[0]", "want HOST:PORT"},
		{"no host", []any{"gw.example:443", ":8883"}, p + "[1]", "empty: want a host name or IP address"},
		{"number", []any{"gw.example:443", "b.example:1", 5}, p + "[2]", "want a string, got number"},
		{"null entry", []any{nil}, p + "[0]", "want a string"},
		{"unbracketed IPv6", []any{"2001:db8::1:8883"}, p + "[0]", "want HOST:PORT"},
		{"scheme", []any{"tcp://gw:8883"}, p + "[0]", "want HOST:PORT"},
		{"bad host", []any{"exa mple:8883"}, p + "[0]", "not a host name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(base.set(p, tt.value).bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}

// TestParseConfigConnectivityEveryProblem: each bad entry is reported at
// its own index, good ones between them are not.
func TestParseConfigConnectivityEveryProblem(t *testing.T) {
	d := parseDoc(t, goldenConfig).set("ggcore.connectivity", []any{"nohost", "gw.example:443", "h:0", "h:70000", ":8883", 5})
	_, err := ParseConfig(d.bytes())
	var paths []string
	for _, p := range problems(err) {
		paths = append(paths, p.Path)
	}
	want := []string{"ggcore.connectivity[0]", "ggcore.connectivity[2]", "ggcore.connectivity[3]",
		"ggcore.connectivity[4]", "ggcore.connectivity[5]"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("problems at %q, want %q\n%v", paths, want, err)
	}
}

// TestConfigConnectivityRoundTrip: a Config with ggcore.connectivity,
// marshalled back to JSON, keeps it.
func TestConfigConnectivityRoundTrip(t *testing.T) {
	in := parseDoc(t, goldenConfig).set("ggcore.connectivity", []any{"192.0.2.10:8883", "[2001:db8::1]:8883"})
	c, err := ParseConfig(in.bytes())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(c2.GGCore.Connectivity, c.GGCore.Connectivity) {
		t.Errorf("round trip: %q, want %q", c2.GGCore.Connectivity, c.GGCore.Connectivity)
	}
}
