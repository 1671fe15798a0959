package router

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ggcore/ggcore/core/topic"
)

const (
	sensor   = "arn:aws:iot:us-east-1:000000000000:thing/sensor"
	display  = "arn:aws:iot:us-east-1:000000000000:thing/display"
	lamp     = "arn:aws:iot:us-east-1:000000000000:thing/lamp"
	stranger = "arn:aws:iot:us-east-1:000000000000:thing/stranger"
	fn       = "arn:aws:lambda:us-east-1:000000000000:function:proc:1"
	cloud    = "cloud"
	shadow   = "GGShadowService"
)

// group is a small but complete table: devices, a function, the cloud and
// the local shadow service, exact and wildcard subjects, both directions
// on some pairs and one direction on others.
var group = []Subscription{
	{ID: "s1", Source: sensor, Subject: "sensors/sensor/temp", Target: display},
	{ID: "s2", Source: sensor, Subject: "sensors/+/humidity", Target: display},
	{ID: "s3", Source: sensor, Subject: "sensors/#", Target: fn},
	{ID: "s4", Source: fn, Subject: "cmd/display/#", Target: display},
	{ID: "s5", Source: sensor, Subject: "telemetry/sensor", Target: cloud},
	{ID: "s6", Source: cloud, Subject: "config/+", Target: sensor},
	{ID: "s7", Source: sensor, Subject: "$aws/things/sensor/shadow/update", Target: shadow},
	{ID: "s8", Source: shadow, Subject: "$aws/things/sensor/shadow/#", Target: sensor},
	{ID: "s9", Source: display, Subject: "#", Target: lamp},
	{ID: "s10", Source: sensor, Subject: "a//b", Target: lamp},
	{ID: "s11", Source: sensor, Subject: "trail/", Target: lamp},
	{ID: "s12", Source: sensor, Subject: "sensors/sensor/temp", Target: display}, // same route as s1
}

func mustNew(t testing.TB, subs []Subscription) *Table {
	t.Helper()
	tb, err := New(subs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tb
}

func TestAllowed(t *testing.T) {
	tb := mustNew(t, group)
	tests := []struct {
		name                  string
		source, target, topic string
		want                  bool
	}{
		{"exact subject", sensor, display, "sensors/sensor/temp", true},
		{"exact subject, other topic", sensor, display, "sensors/sensor/pressure", false},
		{"exact subject, longer topic", sensor, display, "sensors/sensor/temp/x", false},
		{"reverse direction", display, sensor, "sensors/sensor/temp", false},
		{"plus subject", sensor, display, "sensors/other/humidity", true},
		{"plus subject, empty level", sensor, display, "sensors//humidity", true},
		{"plus subject, two levels", sensor, display, "sensors/a/b/humidity", false},
		{"hash subject", sensor, fn, "sensors/x/y/z", true},
		{"hash subject, parent level", sensor, fn, "sensors", true},
		{"hash subject, sibling", sensor, fn, "sensorsX", false},
		{"function to device", fn, display, "cmd/display/brightness", true},
		{"function to device, not its subject", fn, display, "cmd/lamp/on", false},
		{"device to function, reverse", display, fn, "cmd/display/brightness", false},
		{"to cloud", sensor, cloud, "telemetry/sensor", true},
		{"to cloud, other topic", sensor, cloud, "telemetry/other", false},
		{"from cloud", cloud, sensor, "config/rate", true},
		{"cloud, reverse", sensor, cloud, "config/rate", false},
		{"to shadow service", sensor, shadow, "$aws/things/sensor/shadow/update", true},
		{"to shadow service, other thing", sensor, shadow, "$aws/things/lamp/shadow/update", false},
		{"from shadow service", shadow, sensor, "$aws/things/sensor/shadow/update/accepted", true},
		{"catch-all subject", display, lamp, "anything/at/all", true},
		{"catch-all subject skips $ topics", display, lamp, "$aws/things/lamp/shadow/update", false},
		{"empty level subject", sensor, lamp, "a//b", true},
		{"empty level subject, no empty level", sensor, lamp, "a/b", false},
		{"trailing slash subject", sensor, lamp, "trail/", true},
		{"trailing slash subject, without slash", sensor, lamp, "trail", false},
		{"unknown source", stranger, display, "sensors/sensor/temp", false},
		{"unknown target", sensor, stranger, "sensors/sensor/temp", false},
		{"source as target of itself", sensor, sensor, "sensors/sensor/temp", false},
		{"case-sensitive ARN", strings.ToUpper(sensor), display, "sensors/sensor/temp", false},
		{"case-sensitive topic", sensor, display, "Sensors/sensor/temp", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tb.Allowed(tt.source, tt.target, tt.topic); got != tt.want {
				t.Errorf("Allowed(%s, %s, %q) = %v, want %v", tt.source, tt.target, tt.topic, got, tt.want)
			}
		})
	}
}

func TestHasRouteAndTargets(t *testing.T) {
	tb := mustNew(t, group)
	tests := []struct {
		source, topic string
		want          []string
	}{
		{sensor, "sensors/sensor/temp", []string{display, fn}},
		{sensor, "sensors/sensor/humidity", []string{display, fn}},
		{sensor, "sensors/x", []string{fn}},
		{sensor, "telemetry/sensor", []string{cloud}},
		{sensor, "$aws/things/sensor/shadow/update", []string{shadow}},
		{sensor, "unrouted", nil},
		{display, "x", []string{lamp}},
		{display, "$SYS/x", nil},
		{cloud, "config/a", []string{sensor}},
		{shadow, "$aws/things/sensor/shadow/delta", []string{sensor}},
		{lamp, "anything", nil}, // only ever a target
		{stranger, "sensors/sensor/temp", nil},
	}
	for _, tt := range tests {
		got := tb.Targets(tt.source, tt.topic, nil)
		if !slices.Equal(got, tt.want) {
			t.Errorf("Targets(%s, %q) = %q, want %q", tt.source, tt.topic, got, tt.want)
		}
		if has := tb.HasRoute(tt.source, tt.topic); has != (len(tt.want) > 0) {
			t.Errorf("HasRoute(%s, %q) = %v, want %v", tt.source, tt.topic, has, len(tt.want) > 0)
		}
	}

	// Targets appends and leaves what dst held alone.
	dst := []string{"kept"}
	got := tb.Targets(sensor, "sensors/sensor/temp", dst)
	if want := []string{"kept", display, fn}; !slices.Equal(got, want) {
		t.Errorf("Targets with a non-empty dst = %q, want %q", got, want)
	}
}

func TestTargetsManyTargets(t *testing.T) {
	// More targets than the stack bit set holds, some reached twice.
	var subs []Subscription
	for i := range 300 {
		target := fmt.Sprintf("arn:aws:iot:us-east-1:000000000000:thing/t%d", i)
		subs = append(subs,
			Subscription{ID: fmt.Sprintf("a%d", i), Source: cloud, Subject: "all/#", Target: target},
			Subscription{ID: fmt.Sprintf("b%d", i), Source: cloud, Subject: fmt.Sprintf("one/%d", i%7), Target: target},
		)
	}
	tb := mustNew(t, subs)
	got := tb.Targets(cloud, "all/x", nil)
	if len(got) != 300 || got[0] != subs[0].Target || got[299] != subs[598].Target {
		t.Errorf("Targets(all/x) has %d targets (first %q), want 300 in table order", len(got), got[:min(1, len(got))])
	}
	if got := tb.Targets(cloud, "one/3", nil); len(got) != 43 {
		t.Errorf("Targets(one/3) has %d targets, want 43", len(got))
	}
}

func TestCanReceive(t *testing.T) {
	tb := mustNew(t, group)
	tests := []struct {
		name           string
		target, filter string
		want           bool
	}{
		{"# against narrower subjects", display, "#", true},
		{"exact filter equal to a subject", display, "sensors/sensor/temp", true},
		{"narrower filter inside a plus subject", display, "sensors/kitchen/humidity", true},
		{"plus filter across subjects", display, "sensors/+/+", true},
		{"filter no subject can match", display, "other/#", false},
		{"hash subject", display, "cmd/display/+/x", true},
		{"$SYS/# refused", display, "$SYS/#", false},
		{"$SYS/# refused despite a catch-all subject", lamp, "$SYS/#", false},
		{"# against a catch-all subject", lamp, "#", true},
		{"$aws filter against shadow subject", sensor, "$aws/things/sensor/shadow/update/#", true},
		{"# against $aws and plain subjects", sensor, "#", true}, // through config/+
		{"$aws filter of another thing", sensor, "$aws/things/lamp/shadow/#", false},
		{"cloud as a target", cloud, "telemetry/#", true},
		{"shadow service as a target", shadow, "$aws/things/+/shadow/update", true},
		{"device that is only a source", stranger, "#", false},
		{"empty-level filter", lamp, "a/+/b", true},
		{"invalid filter", display, "sensors/#/temp", false},
		{"empty filter", display, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tb.CanReceive(tt.target, tt.filter); got != tt.want {
				t.Errorf("CanReceive(%s, %q) = %v, want %v", tt.target, tt.filter, got, tt.want)
			}
		})
	}

	// A device whose only incoming subscription is a $aws one cannot
	// receive through "#": wildcard-first filters never match $ topics.
	onlyShadow := mustNew(t, []Subscription{{ID: "x", Source: shadow, Subject: "$aws/things/lamp/shadow/#", Target: lamp}})
	if onlyShadow.CanReceive(lamp, "#") {
		t.Errorf("CanReceive(lamp, #) = true with only a $aws subject")
	}
}

func TestNewErrors(t *testing.T) {
	ok := Subscription{ID: "ok", Source: sensor, Subject: "a/b", Target: display}
	tests := []struct {
		name    string
		subs    []Subscription
		want    []string // substrings of the error
		invalid bool     // wraps topic.ErrInvalid
	}{
		{
			name: "duplicate ID",
			subs: []Subscription{ok, {ID: "s1", Source: sensor, Subject: "x", Target: lamp}, {ID: "s1", Source: lamp, Subject: "y", Target: sensor}},
			want: []string{`router: subscription "s1" (#2): ID already used by subscription #1`},
		},
		{
			name:    "invalid subject",
			subs:    []Subscription{ok, {ID: "s1", Source: sensor, Subject: "a/#/b", Target: lamp}},
			want:    []string{`router: subscription "s1": Subject "a/#/b": `, "'#' must be the whole last level"},
			invalid: true,
		},
		{
			name:    "partial-level plus",
			subs:    []Subscription{{ID: "p", Source: sensor, Subject: "a/b+", Target: lamp}},
			want:    []string{`subscription "p": Subject "a/b+"`, "'+' must occupy a whole level"},
			invalid: true,
		},
		{
			name:    "empty subject",
			subs:    []Subscription{{ID: "e", Source: sensor, Subject: "", Target: lamp}},
			want:    []string{`subscription "e": Subject "": `, "empty"},
			invalid: true,
		},
		{
			name: "empty ID named by index",
			subs: []Subscription{ok, {Source: sensor, Subject: "x", Target: lamp}},
			want: []string{"router: subscription #1: ID is empty"},
		},
		{
			name: "empty source",
			subs: []Subscription{{ID: "s", Subject: "x", Target: lamp}},
			want: []string{`router: subscription "s": Source is empty`},
		},
		{
			name: "empty target",
			subs: []Subscription{{ID: "s", Source: sensor, Subject: "x"}},
			want: []string{`router: subscription "s": Target is empty`},
		},
		{
			name:    "every problem reported",
			subs:    []Subscription{{ID: "a", Subject: "#/x", Target: lamp}, {ID: "b", Source: sensor, Subject: "x"}},
			want:    []string{`subscription "a": Source is empty`, `subscription "a": Subject "#/x"`, `subscription "b": Target is empty`},
			invalid: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb, err := New(tt.subs)
			if err == nil {
				t.Fatalf("New succeeded (%d entries), want an error", tb.Len())
			}
			if tb != nil {
				t.Errorf("New returned a table with its error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			if got := errors.Is(err, topic.ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(err, topic.ErrInvalid) = %v, want %v", got, tt.invalid)
			}
		})
	}
}

func TestEmptyAndNilTables(t *testing.T) {
	empty := mustNew(t, nil)
	var nilTable *Table
	for name, tb := range map[string]*Table{"empty": empty, "nil": nilTable} {
		if tb.Len() != 0 || tb.Allowed(sensor, display, "a") || tb.HasRoute(sensor, "a") ||
			tb.CanReceive(display, "#") || len(tb.Targets(sensor, "a", nil)) != 0 {
			t.Errorf("%s table routes something", name)
		}
	}
	if n := mustNew(t, group).Len(); n != len(group) {
		t.Errorf("Len() = %d, want %d", n, len(group))
	}
}

func TestNoAllocations(t *testing.T) {
	tb := mustNew(t, group)
	dst := make([]string, 0, 8)
	checks := map[string]func(){
		"Allowed hit":  func() { tb.Allowed(sensor, display, "sensors/x/humidity") },
		"Allowed miss": func() { tb.Allowed(sensor, display, "sensors/x/y/z") },
		"HasRoute":     func() { tb.HasRoute(sensor, "sensors/sensor/temp") },
		"Targets":      func() { dst = tb.Targets(sensor, "sensors/sensor/temp", dst[:0]) },
		"CanReceive":   func() { tb.CanReceive(display, "sensors/+/+") },
	}
	for name, fn := range checks {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, n)
		}
	}
}

func TestConcurrentReaders(t *testing.T) {
	tb := mustNew(t, group)
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for range 8 {
		wg.Go(func() {
			var dst []string
			for range 1000 {
				dst = tb.Targets(sensor, "sensors/sensor/temp", dst[:0])
				if !tb.Allowed(fn, display, "cmd/display/x") || len(dst) != 2 || !tb.CanReceive(lamp, "#") {
					errs <- "a concurrent reader got a wrong answer"
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// FuzzTable checks Allowed, HasRoute, Targets and CanReceive against a
// linear scan with topic.Match and topic.Intersect, for small tables
// built from fuzzed subjects and endpoint choices.
func FuzzTable(f *testing.F) {
	f.Add("a/+", "a/#", "#", "$SYS/#", "a/b", "+", uint16(0x1234))
	f.Add("a//b", "+/+", "a/", "/#", "a//b", "a/+/b", uint16(0))
	f.Add("$aws/things/x/shadow/#", "x", "x/#", "+/x", "$aws/things/x/shadow/get", "#", uint16(0xffff))
	f.Add("sensors/+/temp", "sensors/#", "cmd/+", "cmd/a", "sensors/k/temp", "sensors/k/+", uint16(0x0f0f))
	endpoints := []string{sensor, display, cloud, shadow}
	f.Fuzz(func(t *testing.T, s0, s1, s2, s3, name, filter string, routes uint16) {
		var subs []Subscription
		for i, s := range []string{s0, s1, s2, s3} {
			if topic.ValidFilter(s) != nil {
				continue
			}
			r := routes >> (4 * i)
			subs = append(subs, Subscription{
				ID: fmt.Sprint(i), Source: endpoints[r&3], Subject: s, Target: endpoints[(r>>2)&3],
			})
		}
		tb, err := New(subs)
		if err != nil {
			t.Fatalf("New(%v): %v", subs, err)
		}
		ref := linear(subs)
		for _, src := range endpoints {
			for _, dst := range endpoints {
				if got, want := tb.Allowed(src, dst, name), ref.Allowed(src, dst, name); got != want {
					t.Fatalf("Allowed(%s, %s, %q) = %v, linear scan says %v; table %v", src, dst, name, got, want, subs)
				}
			}
			if got, want := tb.Targets(src, name, nil), ref.Targets(src, name, nil); !slices.Equal(got, want) {
				t.Fatalf("Targets(%s, %q) = %q, linear scan says %q; table %v", src, name, got, want, subs)
			}
			if got, want := tb.HasRoute(src, name), ref.HasRoute(src, name); got != want {
				t.Fatalf("HasRoute(%s, %q) = %v, linear scan says %v; table %v", src, name, got, want, subs)
			}
			if got, want := tb.CanReceive(src, filter), ref.CanReceive(src, filter); got != want {
				t.Fatalf("CanReceive(%s, %q) = %v, linear scan says %v; table %v", src, filter, got, want, subs)
			}
		}
	})
}
