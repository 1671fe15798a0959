// Package topic validates MQTT topic names and topic filters and matches
// them against each other, following MQTT 3.1.1 §4.7 and MQTT 5 §4.7.
//
// It does no I/O and allocates nothing on the matching paths, so the router
// can call it once per message and subscriber.
package topic

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest topic name or filter MQTT can encode (a
// two-byte length prefix).
const MaxLength = 65535

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid topic")

// ValidName reports why name cannot be used as the topic of a PUBLISH, or
// nil: it must be non-empty UTF-8 without NUL and without the wildcards
// '+' and '#'.
func ValidName(name string) error {
	if err := validCommon(name); err != nil {
		return err
	}
	if strings.ContainsAny(name, "+#") {
		return fmt.Errorf("%w: %q: wildcards are not allowed in a topic name", ErrInvalid, name)
	}
	return nil
}

// ValidFilter reports why filter cannot be used as a subscription filter,
// or nil: '+' must fill a whole level and '#' must be the whole last level.
func ValidFilter(filter string) error {
	if err := validCommon(filter); err != nil {
		return err
	}
	for i := 0; i < len(filter); i++ {
		switch filter[i] {
		case '+':
			if (i > 0 && filter[i-1] != '/') || (i+1 < len(filter) && filter[i+1] != '/') {
				return fmt.Errorf("%w: %q: '+' must occupy a whole level", ErrInvalid, filter)
			}
		case '#':
			if (i > 0 && filter[i-1] != '/') || i != len(filter)-1 {
				return fmt.Errorf("%w: %q: '#' must be the whole last level", ErrInvalid, filter)
			}
		}
	}
	return nil
}

func validCommon(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalid)
	case len(s) > MaxLength:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(s), MaxLength)
	case !utf8.ValidString(s):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrInvalid)
	}
	return nil
}

// Match reports whether the topic name matches the filter. Both are
// assumed valid. As MQTT requires, a filter starting with a wildcard does
// not match a topic starting with '$' (such as $SYS/...).
func Match(filter, name string) bool {
	if len(name) > 0 && name[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		fl, frest, fmore := cut(filter)
		if fl == "#" {
			return true
		}
		nl, nrest, nmore := cut(name)
		if fl != "+" && fl != nl {
			return false
		}
		if !fmore || !nmore {
			// "a/#" also matches "a": the parent level.
			return fmore == nmore || (fmore && frest == "#")
		}
		filter, name = frest, nrest
	}
}

// Intersect reports whether some topic name matches both filters a and b.
// Both are assumed valid. The router uses it to refuse a SUBSCRIBE that no
// subscription of the table can ever satisfy.
func Intersect(a, b string) bool {
	if a == "/#" && b == "+" || a == "+" && b == "/#" {
		// Both match "" ("/#" through its parent level), but the empty
		// string is no topic name: the only real case where sharing a
		// pattern does not mean sharing a topic.
		return false
	}
	if dollar(a) != dollar(b) {
		// A '$' topic is matched only by a filter that starts with it
		// literally; a wildcard-first filter matches only non-'$' topics.
		if !compatibleDollar(a, b) {
			return false
		}
	}
	for {
		al, arest, amore := cut(a)
		bl, brest, bmore := cut(b)
		if al == "#" || bl == "#" {
			return true
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		if !amore || !bmore {
			return amore == bmore || (amore && arest == "#") || (bmore && brest == "#")
		}
		a, b = arest, brest
	}
}

// dollar reports whether a filter can only match '$' topics (1), only
// non-'$' topics (0), or is a wildcard-first filter (2).
func dollar(f string) int {
	switch {
	case f == "":
		return 0
	case f[0] == '$':
		return 1
	case f[0] == '+' || f[0] == '#':
		return 2
	}
	return 0
}

func compatibleDollar(a, b string) bool {
	da, db := dollar(a), dollar(b)
	// A literal '$' first level can never meet a wildcard-first filter.
	return !(da == 1 && db == 2 || da == 2 && db == 1)
}

// cut splits s at its first '/': the level, the rest, and whether a rest
// exists (so "a/" yields "a", "", true).
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
