package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ggcore/ggcore/core/topic"
)

// linear is the naive router: a scan of every subscription with
// topic.Match / topic.Intersect. It is the reference of FuzzTable and the
// baseline of the benchmarks.
type linear []Subscription

func (l linear) Allowed(source, target, name string) bool {
	for _, s := range l {
		if s.Source == source && s.Target == target && topic.Match(s.Subject, name) {
			return true
		}
	}
	return false
}

func (l linear) HasRoute(source, name string) bool {
	for _, s := range l {
		if s.Source == source && topic.Match(s.Subject, name) {
			return true
		}
	}
	return false
}

func (l linear) Targets(source, name string, dst []string) []string {
	var hit []string
	for _, s := range l {
		if s.Source == source && topic.Match(s.Subject, name) && !slices.Contains(hit, s.Target) {
			hit = append(hit, s.Target)
		}
	}
	// Table order: the order in which the source's targets first appear.
	start := len(dst)
	for _, s := range l {
		if s.Source == source && slices.Contains(hit, s.Target) && !slices.Contains(dst[start:], s.Target) {
			dst = append(dst, s.Target)
		}
	}
	return dst
}

func (l linear) CanReceive(target, filter string) bool {
	if topic.ValidFilter(filter) != nil {
		return false
	}
	for _, s := range l {
		if s.Target == target && topic.Intersect(s.Subject, filter) {
			return true
		}
	}
	return false
}

type message struct{ source, target, topic string }

// benchGroup builds a 1,000-entry table shaped like a real group: 100
// devices, 10 functions, the cloud and the shadow service; about half of
// the subjects are exact, the rest use '+' or '#'. It also returns
// messages that the table allows (hit) and ones it refuses (miss): wrong
// direction, unknown topic, topic one level too deep.
func benchGroup() (subs []Subscription, hit, miss []message) {
	rng := rand.New(rand.NewPCG(1, 2))
	dev := func(i int) string { return fmt.Sprintf("arn:aws:iot:us-east-1:000000000000:thing/device-%03d", i) }
	fun := func(i int) string {
		return fmt.Sprintf("arn:aws:lambda:us-east-1:000000000000:function:handler-%d:3", i)
	}
	add := func(source, subject, target string) {
		subs = append(subs, Subscription{ID: fmt.Sprintf("sub-%04d", len(subs)), Source: source, Subject: subject, Target: target})
	}
	for i := 0; len(subs) < 1000; i++ {
		d, name := dev(i%100), fmt.Sprintf("device-%03d", i%100)
		f := fun(rng.IntN(10))
		switch i / 100 {
		case 0:
			add(d, "telemetry/"+name+"/temperature", cloud)
			hit = append(hit, message{d, cloud, "telemetry/" + name + "/temperature"})
			miss = append(miss, message{cloud, d, "telemetry/" + name + "/temperature"})
		case 1:
			add(d, "$aws/things/"+name+"/shadow/update", shadow)
			hit = append(hit, message{d, shadow, "$aws/things/" + name + "/shadow/update"})
			miss = append(miss, message{d, shadow, "$aws/things/" + name + "/shadow/delete"})
		case 2:
			add(shadow, "$aws/things/"+name+"/shadow/#", d)
			hit = append(hit, message{shadow, d, "$aws/things/" + name + "/shadow/update/accepted"})
		case 3:
			add(d, "sensors/"+name+"/+", f)
			hit = append(hit, message{d, f, "sensors/" + name + "/humidity"})
			miss = append(miss, message{d, f, "sensors/" + name + "/humidity/raw"})
		case 4:
			add(f, "cmd/"+name+"/#", d)
			hit = append(hit, message{f, d, "cmd/" + name + "/led/set"})
			miss = append(miss, message{f, d, "cmd/device-x/led/set"})
		case 5:
			add(cloud, "config/"+name, d)
			hit = append(hit, message{cloud, d, "config/" + name})
			miss = append(miss, message{cloud, d, "config/" + name + "/extra"})
		case 6:
			add(d, "alerts/+/level", dev((i+1)%100))
			hit = append(hit, message{d, dev((i + 1) % 100), "alerts/fire/level"})
			miss = append(miss, message{dev((i + 1) % 100), d, "alerts/fire/level"})
		case 7:
			add(d, "fleet/"+name+"/status", dev(rng.IntN(100)))
			miss = append(miss, message{d, dev(100), "fleet/" + name + "/status"})
		case 8:
			add(f, "results/"+name+"/+/summary", cloud)
			hit = append(hit, message{f, cloud, "results/" + name + "/daily/summary"})
			miss = append(miss, message{f, cloud, "results/" + name + "/daily"})
		case 9:
			add(d, "logs/"+name+"/#", f)
			add(d, "metrics/"+name+"/cpu", f)
			miss = append(miss, message{d, f, "unknown/topic/of/five/levels"})
		}
	}
	return subs, hit, miss
}

func BenchmarkAllowed(b *testing.B) {
	subs, hit, miss := benchGroup()
	tb := mustNew(b, subs)
	run := func(name string, allowed func(source, target, topic string) bool) {
		for _, set := range []struct {
			kind string
			msgs []message
			want bool
		}{{"hit", hit, true}, {"miss", miss, false}} {
			b.Run(name+"/"+set.kind, func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					m := set.msgs[i%len(set.msgs)]
					if allowed(m.source, m.target, m.topic) != set.want {
						b.Fatalf("Allowed(%s, %s, %q) != %v", m.source, m.target, m.topic, set.want)
					}
					i++
				}
			})
		}
	}
	run("table", tb.Allowed)
	run("linear", linear(subs).Allowed)
}

func BenchmarkTargets(b *testing.B) {
	subs, hit, miss := benchGroup()
	tb := mustNew(b, subs)
	msgs := append(slices.Clone(hit), miss...)
	run := func(name string, targets func(source, topic string, dst []string) []string) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]string, 0, 16)
			i := 0
			for b.Loop() {
				m := msgs[i%len(msgs)]
				dst = targets(m.source, m.topic, dst[:0])
				i++
			}
		})
	}
	run("table", tb.Targets)
	run("linear", linear(subs).Targets)
}

func BenchmarkCanReceive(b *testing.B) {
	subs, _, _ := benchGroup()
	tb := mustNew(b, subs)
	dev := "arn:aws:iot:us-east-1:000000000000:thing/device-042"
	filters := []string{
		"#",                               // yes
		"cmd/device-042/+/set",            // yes
		"$aws/things/device-042/shadow/#", // yes
		"$SYS/#",                          // no
		"cmd/device-043/#",                // no
		"some/other/+/filter",             // no
	}
	run := func(name string, canReceive func(target, filter string) bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if canReceive(dev, filters[i%len(filters)]) != (i%len(filters) < 3) {
					b.Fatalf("CanReceive(%q) is wrong", filters[i%len(filters)])
				}
				i++
			}
		})
	}
	run("table", tb.CanReceive)
	run("linear", linear(subs).CanReceive)
}

func BenchmarkNew(b *testing.B) {
	subs, _, _ := benchGroup()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(subs); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBenchGroup keeps the benchmark data honest: the table and the linear
// scan agree on every message, and the hit and miss sets are what they say.
func TestBenchGroup(t *testing.T) {
	subs, hit, miss := benchGroup()
	if len(subs) != 1000 {
		t.Fatalf("benchGroup has %d subscriptions, want 1000", len(subs))
	}
	tb, ref := mustNew(t, subs), linear(subs)
	wild := 0
	for _, s := range subs {
		if strings.ContainsAny(s.Subject, "+#") {
			wild++
		}
	}
	if wild < 300 || wild > 700 {
		t.Errorf("%d of 1000 subjects have wildcards, want a mix", wild)
	}
	for _, set := range []struct {
		msgs []message
		want bool
	}{{hit, true}, {miss, false}} {
		for _, m := range set.msgs {
			if got := tb.Allowed(m.source, m.target, m.topic); got != set.want || ref.Allowed(m.source, m.target, m.topic) != set.want {
				t.Errorf("Allowed(%s, %s, %q) = %v, want %v", m.source, m.target, m.topic, got, set.want)
			}
			if got, want := tb.Targets(m.source, m.topic, nil), ref.Targets(m.source, m.topic, nil); !slices.Equal(got, want) {
				t.Errorf("Targets(%s, %q) = %q, linear scan says %q", m.source, m.topic, got, want)
			}
		}
	}
}
