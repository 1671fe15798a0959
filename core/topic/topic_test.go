package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"a/b/c", true},
		{"/", true},
		{"a/", true},
		{"/a", true},
		{"a//b", true},
		{"$SYS/broker/uptime", true},
		{"$aws/things/t1/shadow/update", true},
		{"with space/and-dash", true},
		{"température/°C", true},
		{strings.Repeat("x", MaxLength), true},
		{"", false},
		{strings.Repeat("x", MaxLength+1), false},
		{"a/+", false},
		{"+", false},
		{"#", false},
		{"a/#", false},
		{"a+b", false},
		{"a#b", false},
		{"a\x00b", false},
		{"bad\xffutf8", false},
	}
	for _, tt := range tests {
		err := ValidName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidName(%.40q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidName(%.40q) error %v does not wrap ErrInvalid", tt.name, err)
		}
	}
}

func TestValidFilter(t *testing.T) {
	tests := []struct {
		filter string
		ok     bool
	}{
		{"a", true},
		{"a/b", true},
		{"#", true},
		{"+", true},
		{"/", true},
		{"/#", true},
		{"a/", true},
		{"a/#", true},
		{"a/+/b", true},
		{"+/+", true},
		{"+/#", true},
		{"a//+", true},
		{"$SYS/#", true},
		{"$aws/things/+/shadow/#", true},
		{"", false},
		{strings.Repeat("x", MaxLength+1), false},
		{"a#", false},
		{"#a", false},
		{"a/#/b", false},
		{"#/a", false},
		{"#/", false},
		{"##", false},
		{"a+", false},
		{"+a", false},
		{"a/+b", false},
		{"a/b+/c", false},
		{"++", false},
		{"a/b#", false},
		{"a\x00", false},
		{"\xff/#", false},
	}
	for _, tt := range tests {
		err := ValidFilter(tt.filter)
		if (err == nil) != tt.ok {
			t.Errorf("ValidFilter(%.40q) = %v, want ok=%v", tt.filter, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidFilter(%.40q) error %v does not wrap ErrInvalid", tt.filter, err)
		}
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, name string
		want         bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a", "a/b", false},
		{"a/b", "a", false},
		{"a/b/c", "a/b/c", true},
		{"a/b/c", "a/b/d", false},
		{"A", "a", false}, // case-sensitive

		// '#' matches the level it stands in, everything below, and the parent.
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"#", "/", true},
		{"a/#", "a", true},
		{"a/#", "a/", true},
		{"a/#", "a/b", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"a/b/#", "a", false},
		{"/#", "/", true},
		{"/#", "a", false},

		// '+' matches exactly one level, empty levels included.
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "/", false},
		{"+/+", "/", true},
		{"a/+/b", "a//b", true},
		{"a/+/b", "a/x/b", true},
		{"a/+/b", "a/x/y/b", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"+/b", "/b", true},
		{"a/+/#", "a/x", true},
		{"a/+/#", "a", false},

		// Trailing and leading '/' are levels of their own.
		{"a/", "a/", true},
		{"a/", "a", false},
		{"a", "a/", false},
		{"/a", "/a", true},
		{"/a", "a", false},
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},

		// Wildcard-first filters never match '$' topics; literal '$' does.
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"+", "$SYS", false},
		{"$SYS/#", "$SYS/broker", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/+", "$SYS/broker", true},
		{"$SYS/broker", "$SYS/broker", true},
		{"a/#", "a/$x", true}, // '$' deeper than the first level is ordinary
		{"+/$x", "a/$x", true},
		{"$aws/things/+/shadow/#", "$aws/things/t1/shadow/update/accepted", true},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.name); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v (reference is wrong)", tt.filter, tt.name, got, tt.want)
		}
	}
}

func TestIntersect(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"a", "a", true},
		{"a", "b", false},
		{"a/b", "a", false},
		{"#", "a/b", true},
		{"#", "#", true},
		{"#", "+", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+", "a/#", true}, // "a"
		{"+/+", "a/#", true},
		{"+/+", "a", false},
		{"a/+", "+/b", true},
		{"a/+", "b/+", false},
		{"a/+/c", "a/b/+", true},
		{"a/+/c", "a/b/d", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "b/#", false},
		{"a/b/#", "a/#", true},
		{"a/b/#", "a", false},
		{"a/b/#", "a/+", true}, // "a/b"
		{"a/b/#", "a/c/#", false},
		{"a/+", "a", false},
		{"a/+", "a/", true},
		{"a/", "a", false},
		{"a/", "a/#", true},
		{"a//b", "a/+/b", true},
		{"a//b", "a/b", false},
		{"/", "+/+", true},
		{"/#", "+", false}, // only the empty name, which is not a topic, would match both
		{"/#", "+/#", true},
		{"/#", "#", true},
		{"/#", "a/#", false},

		// '$' topics: only literal '$' filters reach them.
		{"#", "$SYS/#", false},
		{"+/x", "$SYS/x", false},
		{"+/#", "$SYS/#", false},
		{"#", "$SYS", false},
		{"$SYS/#", "$SYS/broker/+", true},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "$aws/#", false},
		{"$SYS/x", "a/x", false},
		{"a/#", "a/$x", true},
		{"+/$x", "a/#", true},
	}
	for _, tt := range tests {
		if got := Intersect(tt.a, tt.b); got != tt.want {
			t.Errorf("Intersect(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Intersect(tt.b, tt.a); got != tt.want {
			t.Errorf("Intersect(%q, %q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
		if got := enumIntersect(tt.a, tt.b); got != tt.want {
			t.Errorf("enumIntersect(%q, %q) = %v, want %v (reference is wrong)", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestExhaustive compares Match and Intersect with the references for
// every filter and name of up to three levels over a small alphabet that
// contains the interesting cases: empty levels, '$' levels, wildcards.
func TestExhaustive(t *testing.T) {
	filters := combine([]string{"a", "b", "", "$x", "+", "#"}, 3)
	names := combine([]string{"a", "b", "", "$x"}, 4)
	var validF, validN []string
	for _, f := range filters {
		if ValidFilter(f) == nil {
			validF = append(validF, f)
		}
	}
	for _, n := range names {
		if ValidName(n) == nil {
			validN = append(validN, n)
		}
	}
	for _, f := range validF {
		for _, n := range validN {
			if got, want := Match(f, n), refMatch(f, n); got != want {
				t.Errorf("Match(%q, %q) = %v, reference says %v", f, n, got, want)
			}
		}
		for _, g := range validF {
			if got, want := Intersect(f, g), enumIntersect(f, g); got != want {
				t.Errorf("Intersect(%q, %q) = %v, reference says %v", f, g, got, want)
			}
		}
	}
}

// combine returns every '/'-joined sequence of 1..maxLevels levels.
func combine(levels []string, maxLevels int) []string {
	var out []string
	prev := []string{""}
	for n := 1; n <= maxLevels; n++ {
		var next []string
		for _, p := range prev {
			for _, l := range levels {
				s := l
				if n > 1 {
					s = p + "/" + l
				}
				next = append(next, s)
			}
		}
		out = append(out, next...)
		prev = next
	}
	return out
}

// refMatch is a slow, obviously correct Match: split both on '/' and
// compare level by level.
func refMatch(filter, name string) bool {
	if strings.HasPrefix(name, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl := strings.Split(filter, "/")
	nl := strings.Split(name, "/")
	for i, f := range fl {
		if f == "#" {
			// Everything from level i on, including nothing (the parent).
			return true
		}
		if i >= len(nl) {
			return false
		}
		if f != "+" && f != nl[i] {
			return false
		}
	}
	return len(fl) == len(nl)
}

// enumIntersect decides Intersect by search: it builds every topic that
// could witness an intersection and asks refMatch. If some topic matches
// both filters, one also does whose levels are each a literal level of a
// or b at that position, or a fresh level that neither filter names, and
// that is no longer than the longer filter. The empty string is no topic
// name, so it is no witness. Exponential; for short filters.
func enumIntersect(a, b string) bool {
	al, bl := strings.Split(a, "/"), strings.Split(b, "/")
	n := max(len(al), len(bl))
	cands := make([][]string, n)
	for i := range n {
		set := []string{"\x01fresh"}
		for _, ls := range [][]string{al, bl} {
			if i < len(ls) && ls[i] != "+" && ls[i] != "#" {
				set = append(set, ls[i])
			}
		}
		cands[i] = set
	}
	var try func(prefix string, i int) bool
	try = func(prefix string, i int) bool {
		for _, l := range cands[i] {
			t := l
			if i > 0 {
				t = prefix + "/" + l
			}
			if t != "" && refMatch(a, t) && refMatch(b, t) {
				return true
			}
			if i+1 < n && try(t, i+1) {
				return true
			}
		}
		return false
	}
	return try("", 0)
}

func levels(s string) int { return strings.Count(s, "/") + 1 }

func FuzzMatch(f *testing.F) {
	seeds := [][2]string{
		{"#", "a"}, {"a/#", "a"}, {"a/+/b", "a//b"}, {"+", "$SYS"}, {"#", "$SYS/x"},
		{"$SYS/#", "$SYS"}, {"a/", "a"}, {"a", "a/"}, {"+/+", "/"}, {"/#", "/"},
		{"a/+/#", "a/b/c/d"}, {"sensors/+/temp", "sensors/dev1/temp"}, {"", ""},
		{"a/#/b", "a/x/b"}, {"+a", "ba"}, {"a", "a\x00"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name) // must not panic, whatever the input
		if ValidFilter(filter) != nil || ValidName(name) != nil {
			return
		}
		if want := refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, name, got, want)
		}
		if !Intersect(filter, filter) {
			t.Fatalf("Intersect(%q, itself) = false", filter)
		}
		if !Intersect(name, name) {
			t.Fatalf("Intersect(%q, itself) = false", name)
		}
		if got {
			// A name is a filter that matches only itself.
			if !Intersect(filter, name) || !Intersect(name, filter) {
				t.Fatalf("Match(%q, %q) but Intersect is false", filter, name)
			}
		} else if Intersect(filter, name) {
			t.Fatalf("Intersect(%q, %q) but Match is false", filter, name)
		}
	})
}

func FuzzIntersect(f *testing.F) {
	seeds := [][2]string{
		{"#", "a"}, {"#", "$SYS/#"}, {"$SYS/#", "$SYS/+"}, {"a/+", "+/b"}, {"a/#", "a"},
		{"a/b/#", "a/+"}, {"+", "a/#"}, {"a//b", "a/+/b"}, {"/#", "+"}, {"a/", "a/#"},
		{"+/+", "/"}, {"a/+", "a"}, {"", "#"}, {"#/a", "+"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		got := Intersect(a, b) // must not panic, whatever the input
		if ValidFilter(a) != nil || ValidFilter(b) != nil {
			return
		}
		if rev := Intersect(b, a); rev != got {
			t.Fatalf("Intersect(%q, %q) = %v but Intersect(%q, %q) = %v", a, b, got, b, a, rev)
		}
		if !Intersect(a, a) {
			t.Fatalf("Intersect(%q, itself) = false", a)
		}
		if levels(a) <= 6 && levels(b) <= 6 {
			if want := enumIntersect(a, b); got != want {
				t.Fatalf("Intersect(%q, %q) = %v, reference says %v", a, b, got, want)
			}
		}
	})
}
