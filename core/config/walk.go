package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxFileSize is the largest config.json or group.json ggcore reads.
const MaxFileSize = 4 << 20

// maxProblems caps how many problems one file reports; the rest are
// counted in a last line.
const maxProblems = 50

// FieldError is one problem found in a file: the JSON path of the value
// (such as "Subscriptions[2].Subject") and what is wrong with it. Parse
// errors join one FieldError per problem; use errors.As to get the first.
type FieldError struct {
	Path   string
	Reason string
}

// Error returns "<path>: <reason>".
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return e.Path + ": " + e.Reason
}

// walker collects the problems and the ignored fields of one document.
type walker struct {
	errs    []error
	dropped int
	ignored []string
}

func (w *walker) fail(path, format string, args ...any) {
	if len(w.errs) >= maxProblems {
		w.dropped++
		return
	}
	w.errs = append(w.errs, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (w *walker) err() error {
	errs := w.errs
	if w.dropped > 0 {
		errs = append(slices.Clip(errs), fmt.Errorf("... and %d more problems", w.dropped))
	}
	return errors.Join(errs...)
}

// document checks size, encoding and syntax, and returns data ready to walk.
func document(data []byte) ([]byte, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%d bytes, more than the %d bytes (%d MiB) ggcore reads", len(data), MaxFileSize, MaxFileSize>>20)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty: want a JSON object")
	}
	if !utf8.Valid(data) {
		return nil, errors.New("not valid UTF-8: save the file as UTF-8")
	}
	if !json.Valid(data) {
		var v any
		err := json.Unmarshal(data, &v)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := position(data, se.Offset)
			return nil, fmt.Errorf("invalid JSON at line %d, column %d: %v", line, col, se)
		}
		return nil, fmt.Errorf("invalid JSON: %v", err)
	}
	return data, nil
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off > 0 {
		off-- // SyntaxError.Offset counts the offending byte
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return line, col
}

// kind names the JSON type of a valid value.
func kind(raw json.RawMessage) string {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return "object"
		case '[':
			return "array"
		case '"':
			return "string"
		case 't', 'f':
			return "boolean"
		case 'n':
			return "null"
		}
		return "number"
	}
	return "nothing"
}

func isNull(raw json.RawMessage) bool { return kind(raw) == "null" }

// field is one member of an object, in document order.
type field struct {
	name  string
	value json.RawMessage
}

// members lists the members of a valid JSON object in document order
// (encoding/json maps lose the order and silently keep the last
// duplicate), appended to dst. The values are sub-slices of raw, not
// copies: a group of a thousand devices is read without a decoder, buffer
// and copy per object.
func members(dst []field, raw json.RawMessage) []field {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return dst
	}
	out := dst
	for {
		i = skipSpace(raw, i+1) // past '{' or ','
		if i >= len(raw) || raw[i] != '"' {
			return out // '}' or not valid JSON
		}
		end := skipValue(raw, i)
		name, ok := unquote(raw[i:end])
		if !ok {
			return out
		}
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ':' {
			return out
		}
		start := skipSpace(raw, i+1)
		end = skipValue(raw, start)
		if end == start {
			return out
		}
		out = append(out, field{name, raw[start:end:end]})
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ',' {
			return out
		}
	}
}

// elements lists the elements of a valid JSON array, as sub-slices of raw.
func elements(raw json.RawMessage) []json.RawMessage {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil
	}
	var out []json.RawMessage
	for {
		start := skipSpace(raw, i+1) // past '[' or ','
		end := skipValue(raw, start)
		if end == start {
			return out // ']' or not valid JSON
		}
		out = append(out, raw[start:end:end])
		i = skipSpace(raw, end)
		if i >= len(raw) || raw[i] != ',' {
			return out
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON white space.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the JSON value that starts at data[i]
// (which must not be white space), or i if none starts there. data is
// assumed valid (document checked it); on invalid data it stops without
// reading past the end.
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		for j := i + 1; j < len(data); j++ {
			switch data[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(data)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			case '"':
				j = skipValue(data, j) - 1
			}
		}
		return len(data)
	case '}', ']', ',', ':':
		return i
	}
	j := i // a number, true, false or null
	for j < len(data) {
		switch data[j] {
		case ' ', '\t', '\n', '\r', ',', '}', ']', ':':
			return j
		}
		j++
	}
	return j
}

// unquote decodes a JSON string token; strings without escapes (nearly
// all) are converted directly.
func unquote(tok []byte) (string, bool) {
	if len(tok) < 2 || tok[0] != '"' || tok[len(tok)-1] != '"' {
		return "", false
	}
	inner := tok[1 : len(tok)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) && !hasControl(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", false
	}
	return s, true
}

// hasControl reports a byte below 0x20, which a JSON string must escape.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 {
			return true
		}
	}
	return false
}

// rule says what to do with one member of an object. A nil fn marks a
// Greengrass v1 field that ggcore accepts and does not use.
type rule struct {
	name string
	fn   func(path string, v json.RawMessage)
}

func ignore(name string) rule { return rule{name: name} }

// object walks the members of raw at path by rules and reports unknown
// and duplicate members. It returns the names of the members present with
// a non-null value; nil if raw is not an object (already reported).
func (w *walker) object(path string, raw json.RawMessage, rules []rule) map[string]bool {
	if k := kind(raw); k != "object" {
		w.fail(path, "want a JSON object, got %s", k)
		return nil
	}
	var small [8]field // most objects have fewer members
	ms := members(small[:0], raw)
	var seen map[string]bool // for objects too long to search
	if len(ms) > 16 {
		seen = make(map[string]bool, len(ms))
	}
	present := make(map[string]bool)
	for k, m := range ms {
		p := join(path, m.name)
		dup := false
		if seen != nil {
			dup = seen[m.name]
			seen[m.name] = true
		} else {
			dup = slices.ContainsFunc(ms[:k], func(f field) bool { return f.name == m.name })
		}
		if dup {
			w.fail(p, "appears more than once: keep one")
			continue
		}
		i := slices.IndexFunc(rules, func(r rule) bool { return r.name == m.name })
		if i < 0 {
			w.fail(p, "unknown field%s", suggest(m.name, rules))
			continue
		}
		if rules[i].fn == nil {
			w.ignored = append(w.ignored, p)
			continue
		}
		if isNull(m.value) {
			continue
		}
		present[m.name] = true
		rules[i].fn(p, m.value)
	}
	return present
}

// array walks the elements of raw at path; null counts as empty.
func (w *walker) array(path string, raw json.RawMessage, fn func(path string, v json.RawMessage)) {
	if isNull(raw) {
		return
	}
	if k := kind(raw); k != "array" {
		w.fail(path, "want a JSON array, got %s", k)
		return
	}
	for i, e := range elements(raw) {
		fn(index(path, i), e)
	}
}

// str decodes a string at path into dst.
func (w *walker) str(path string, raw json.RawMessage, dst *string) bool {
	if k := kind(raw); k != "string" {
		w.fail(path, "want a string, got %s", k)
		return false
	}
	if s, ok := unquote(bytes.TrimSpace(raw)); ok {
		*dst = s
		return true
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		w.fail(path, "unreadable string: %v", err)
		return false
	}
	return true
}

// boolean decodes true or false at path into dst.
func (w *walker) boolean(path string, raw json.RawMessage, dst *bool) bool {
	if k := kind(raw); k != "boolean" {
		w.fail(path, "want true or false, got %s", k)
		return false
	}
	*dst = bytes.Equal(bytes.TrimSpace(raw), []byte("true"))
	return true
}

// integer decodes a whole number at path into dst.
func (w *walker) integer(path string, raw json.RawMessage, dst *int64) bool {
	if k := kind(raw); k != "number" {
		w.fail(path, "want a whole number, got %s", k)
		return false
	}
	s := string(bytes.TrimSpace(raw))
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if strings.ContainsAny(s, ".eE") {
			w.fail(path, "want a whole number, got %s", s)
		} else {
			w.fail(path, "%s is out of range", s)
		}
		return false
	}
	*dst = n
	return true
}

// intRange decodes a whole number in [lo, hi]; what names the unit for
// the error, such as "a port (1-65535)".
func (w *walker) intRange(path string, raw json.RawMessage, lo, hi int64, what string, dst *int) {
	var n int64
	if !w.integer(path, raw, &n) {
		return
	}
	if n < lo || n > hi {
		w.fail(path, "%d is not %s", n, what)
		return
	}
	*dst = int(n)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// suggest proposes the closest known field name, or lists the fields
// ggcore uses.
func suggest(name string, rules []rule) string {
	best, bestD := "", 3
	for _, r := range rules {
		if strings.EqualFold(r.name, name) {
			return fmt.Sprintf("; did you mean %q? (names are case-sensitive)", r.name)
		}
		d := distance(strings.ToLower(name), strings.ToLower(r.name))
		if d < bestD && d <= max(1, len(r.name)/4) {
			best, bestD = r.name, d
		}
	}
	if best != "" {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	var known []string
	for _, r := range rules {
		if r.fn != nil {
			known = append(known, r.name)
		}
	}
	return "; known fields: " + strings.Join(known, ", ")
}

// distance is the Levenshtein distance of a and b in bytes, giving up
// (returning a large number) on long names.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 10
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// quote renders a value for an error message, shortened if long.
func quote(s string) string {
	const max = 80
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max]) + "…"
	}
	return strconv.Quote(s)
}
