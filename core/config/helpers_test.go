package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// doc is a JSON document under construction for table tests.
type doc map[string]any

// parseDoc turns JSON text into a doc; it fails the test on bad JSON.
func parseDoc(t testing.TB, s string) doc {
	t.Helper()
	var d doc
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		t.Fatalf("bad test document: %v", err)
	}
	return d
}

// set returns a deep copy of d with the value at a dotted path replaced
// (or added); "Subscriptions.0.Id" indexes arrays.
func (d doc) set(path string, v any) doc {
	c := d.copy()
	parts := strings.Split(path, ".")
	var cur any = map[string]any(c)
	for i, p := range parts {
		last := i == len(parts)-1
		switch n := cur.(type) {
		case map[string]any:
			if last {
				n[p] = v
				return c
			}
			if _, ok := n[p]; !ok {
				n[p] = map[string]any{}
			}
			cur = n[p]
		case []any:
			idx := atoi(p)
			if last {
				n[idx] = v
				return c
			}
			cur = n[idx]
		}
	}
	return c
}

// del returns a deep copy of d without the member at a dotted path.
func (d doc) del(path string) doc {
	c := d.copy()
	parts := strings.Split(path, ".")
	var cur any = map[string]any(c)
	for _, p := range parts[:len(parts)-1] {
		switch n := cur.(type) {
		case map[string]any:
			cur = n[p]
		case []any:
			cur = n[atoi(p)]
		}
	}
	delete(cur.(map[string]any), parts[len(parts)-1])
	return c
}

func (d doc) copy() doc {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	var c doc
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return c
}

func (d doc) bytes() []byte {
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// problems splits a parse error into its FieldErrors.
func problems(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if u := errors.Unwrap(e); u != nil {
			walk(u)
		}
	}
	walk(err)
	return out
}

// wantProblem fails unless err reports a problem at path whose reason
// contains reason.
func wantProblem(t *testing.T, err error, path, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want %s: ...%s...", path, reason)
	}
	for _, p := range problems(err) {
		if p.Path == path && strings.Contains(p.Reason, reason) {
			if !strings.Contains(err.Error(), path+": ") {
				t.Errorf("error text lacks %q:\n%v", path+": ", err)
			}
			return
		}
	}
	t.Fatalf("want a problem %s: ...%s...; got:\n%v", path, reason, err)
}
