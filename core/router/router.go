// Package router holds the subscription table of a Greengrass group and
// answers the routing questions the broker asks: may this message go from
// this source to this target, which targets does a publish reach, and can
// this subscriber ever receive anything through this filter.
//
// A message from source S on topic T goes to target D only if a
// subscription (S, F, D) exists whose subject F matches T. Direction
// matters: (A→B) allows nothing from B to A.
//
// The package is pure: no I/O, no logging, no package state. A Table is
// immutable once built and safe for any number of concurrent readers; its
// per-message methods do not allocate.
package router

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/ggcore/ggcore/core/topic"
)

// Subscription is one entry of a group's subscription table, as in
// group.json. Source and Target are thing ARNs, function ARNs, "cloud" or
// "GGShadowService", compared as exact strings; Subject is an MQTT topic
// filter.
type Subscription struct {
	ID      string
	Source  string
	Subject string
	Target  string
}

// Table is a validated, indexed subscription table. Build it with New;
// it is immutable afterwards and safe for concurrent use. A nil *Table
// routes nothing.
type Table struct {
	n int
	// pairs answers Allowed: one matcher per (source, target).
	pairs map[pair]*matcher
	// sources answers HasRoute and Targets: one matcher per source whose
	// marks are indices into that source's targets.
	sources map[string]*fanout
	// subjects answers CanReceive: the distinct subjects per target.
	subjects map[string][]string
}

type pair struct{ source, target string }

type fanout struct {
	matcher
	targets []string // in order of first appearance in the table
}

// matcher decides which of a set of filters match a topic name. Filters
// without wildcards are looked up whole; the others live in a trie of
// pre-split levels. Marks are small integers attached to filters (target
// indices); a matcher that serves a single (source, target) uses mark 0.
type matcher struct {
	exact map[string][]int32
	wild  *node // nil when every filter is exact
}

type node struct {
	lit  map[string]*node // literal next levels
	plus *node            // '+' next level
	hash []int32          // marks of filters ending in '#' below this node
	end  []int32          // marks of filters ending at this node
}

// New validates subs and builds their Table. Every subscription needs a
// unique non-empty ID, a non-empty Source and Target, and a Subject that
// is a valid topic filter. All problems are reported, each naming the
// subscription (by ID, or by index when the ID is empty) and the field.
func New(subs []Subscription) (*Table, error) {
	var errs []error
	seen := make(map[string]int, len(subs))
	for i, s := range subs {
		if s.ID == "" {
			errs = append(errs, fmt.Errorf("router: subscription %s: ID is empty", label(i, s.ID)))
		} else if j, dup := seen[s.ID]; dup {
			errs = append(errs, fmt.Errorf("router: subscription %s (#%d): ID already used by subscription #%d", label(i, s.ID), i, j))
		} else {
			seen[s.ID] = i
		}
		if s.Source == "" {
			errs = append(errs, fmt.Errorf("router: subscription %s: Source is empty", label(i, s.ID)))
		}
		if s.Target == "" {
			errs = append(errs, fmt.Errorf("router: subscription %s: Target is empty", label(i, s.ID)))
		}
		if err := topic.ValidFilter(s.Subject); err != nil {
			errs = append(errs, fmt.Errorf("router: subscription %s: Subject %q: %w", label(i, s.ID), s.Subject, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	t := &Table{
		n:        len(subs),
		pairs:    make(map[pair]*matcher),
		sources:  make(map[string]*fanout),
		subjects: make(map[string][]string),
	}
	targetIndex := make(map[pair]int32) // (source, target) → index in the source's targets
	subjectSeen := make(map[pair]bool)  // (target, subject)
	for _, s := range subs {
		p := pair{s.Source, s.Target}

		m := t.pairs[p]
		if m == nil {
			m = &matcher{}
			t.pairs[p] = m
		}
		m.add(s.Subject, 0)

		f := t.sources[s.Source]
		if f == nil {
			f = &fanout{}
			t.sources[s.Source] = f
		}
		idx, ok := targetIndex[p]
		if !ok {
			idx = int32(len(f.targets))
			targetIndex[p] = idx
			f.targets = append(f.targets, s.Target)
		}
		f.add(s.Subject, idx)

		if ts := (pair{s.Target, s.Subject}); !subjectSeen[ts] {
			subjectSeen[ts] = true
			t.subjects[s.Target] = append(t.subjects[s.Target], s.Subject)
		}
	}
	return t, nil
}

// label names subscription i in errors: by its quoted ID, or by its index
// when it has none.
func label(i int, id string) string {
	if id == "" {
		return fmt.Sprintf("#%d", i)
	}
	return strconv.Quote(id)
}

// Len returns the number of subscriptions the table was built from.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.n
}

// Allowed reports whether a message that source publishes on topic may be
// delivered to target. topic is a topic name (see topic.ValidName).
func (t *Table) Allowed(source, target, topic string) bool {
	if t == nil {
		return false
	}
	m := t.pairs[pair{source, target}]
	return m != nil && m.any(topic)
}

// HasRoute reports whether a message that source publishes on topic goes
// to any target at all. A publish without a route is dropped.
func (t *Table) HasRoute(source, topic string) bool {
	if t == nil {
		return false
	}
	f := t.sources[source]
	return f != nil && f.any(topic)
}

// Targets appends to dst every distinct target that a message source
// publishes on topic goes to, in the order the targets first appear in
// the table, and returns the extended slice. It allocates only to grow dst
// (or, for a source with more than 256 targets, a small bit set).
func (t *Table) Targets(source, topic string, dst []string) []string {
	if t == nil {
		return dst
	}
	f := t.sources[source]
	if f == nil {
		return dst
	}
	var small [4]uint64
	set := small[:]
	if w := (len(f.targets) + 63) / 64; w > len(small) {
		set = make([]uint64, w)
	}
	f.collect(topic, set)
	for i, w := range set {
		for w != 0 {
			dst = append(dst, f.targets[i*64+bits.TrailingZeros64(w)])
			w &= w - 1
		}
	}
	return dst
}

// CanReceive reports whether target can ever receive a message through a
// subscription to filter: whether some subscription targeting it has a
// Subject that some topic matches together with filter. The broker refuses
// a SUBSCRIBE for which it is false. An invalid filter can receive nothing.
func (t *Table) CanReceive(target, filter string) bool {
	if t == nil || topic.ValidFilter(filter) != nil {
		return false
	}
	for _, s := range t.subjects[target] {
		if topic.Intersect(s, filter) {
			return true
		}
	}
	return false
}

// add records filter (valid) with the given mark.
func (m *matcher) add(filter string, mark int32) {
	if !strings.ContainsAny(filter, "+#") {
		if m.exact == nil {
			m.exact = make(map[string][]int32)
		}
		m.exact[filter] = addMark(m.exact[filter], mark)
		return
	}
	if m.wild == nil {
		m.wild = &node{}
	}
	n := m.wild
	for {
		level, rest, more := cut(filter)
		switch level {
		case "#":
			n.hash = addMark(n.hash, mark)
			return
		case "+":
			if n.plus == nil {
				n.plus = &node{}
			}
			n = n.plus
		default:
			c := n.lit[level]
			if c == nil {
				if n.lit == nil {
					n.lit = make(map[string]*node)
				}
				c = &node{}
				n.lit[level] = c
			}
			n = c
		}
		if !more {
			n.end = addMark(n.end, mark)
			return
		}
		filter = rest
	}
}

func addMark(marks []int32, mark int32) []int32 {
	for _, m := range marks {
		if m == mark {
			return marks
		}
	}
	return append(marks, mark)
}

// any reports whether some filter of m matches the topic name.
func (m *matcher) any(name string) bool {
	if _, ok := m.exact[name]; ok {
		return true
	}
	return m.wild != nil && m.wild.any(name, false, wildcardsApply(name))
}

// collect sets the bit of every mark whose filter matches the topic name.
func (m *matcher) collect(name string, set []uint64) {
	for _, mark := range m.exact[name] {
		set[mark/64] |= 1 << (mark % 64)
	}
	if m.wild != nil {
		m.wild.collect(name, false, wildcardsApply(name), set)
	}
}

// wildcardsApply reports whether the wildcards of a filter's first level
// may match the name: MQTT keeps them away from '$' topics.
func wildcardsApply(name string) bool {
	return name == "" || name[0] != '$'
}

// any reports whether a filter in the subtree of n matches name, the part
// of the topic below n; done means no level is left. wild tells whether
// n's wildcards may match (false only at the root for a '$' topic).
func (n *node) any(name string, done, wild bool) bool {
	if done {
		// "a/#" matches "a" too.
		return len(n.end) > 0 || len(n.hash) > 0
	}
	if wild && len(n.hash) > 0 {
		return true
	}
	level, rest, more := cut(name)
	if c := n.lit[level]; c != nil && c.any(rest, !more, true) {
		return true
	}
	return wild && n.plus != nil && n.plus.any(rest, !more, true)
}

// collect is any that visits every match and records its marks in set.
func (n *node) collect(name string, done, wild bool, set []uint64) {
	if done {
		mark(set, n.end)
		mark(set, n.hash)
		return
	}
	if wild {
		mark(set, n.hash)
	}
	level, rest, more := cut(name)
	if c := n.lit[level]; c != nil {
		c.collect(rest, !more, true, set)
	}
	if wild && n.plus != nil {
		n.plus.collect(rest, !more, true, set)
	}
}

func mark(set []uint64, marks []int32) {
	for _, m := range marks {
		set[m/64] |= 1 << (m % 64)
	}
}

// cut splits s at its first '/': the level, the rest, and whether a rest
// exists (so "a/" yields "a", "", true).
func cut(s string) (level, rest string, more bool) {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:], true
	}
	return s, "", false
}
