package config

import (
	"bytes"
	"encoding/json"
	"testing"
)

// decodedMembers is members done with encoding/json's decoder: what the
// scanner must agree with.
func decodedMembers(raw []byte) []field {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var out []field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return out
		}
		out = append(out, field{name, v})
	}
	return out
}

func decodedElements(raw []byte) []json.RawMessage {
	var out []json.RawMessage
	if json.Unmarshal(raw, &out) != nil {
		return nil
	}
	return out
}

func sameFields(a, b []field) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].name != b[i].name || !bytes.Equal(a[i].value, b[i].value) {
			return false
		}
	}
	return true
}

func sameRaws(a, b []json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

var walkSeeds = []string{
	`{}`, ` { } `, `[]`, `[ ]`, `null`, `"s"`, `12`,
	`{"a":1,"b":"x","a":[1,2,{"c":null}]}`,
	"{\n\t\"Id\" : \"dev0\" ,\r\n \"SyncShadow\":false, \"n\": -1.5e3 }",
	`{"q\"uote\\d":"v\"a\\l\u00e9","brace":"}]{[","e":{},"f":[]}`,
	`{"über":"ñ","k":true}`,
	`[1, "two", {"three":3}, [4, [5]], null, true, false, -0.5]`,
	`[{"a":"]"},"[",{}]`,
}

// TestMembersAndElementsAsDecoder: the scanner reads every member and
// element, in order, as encoding/json does.
func TestMembersAndElementsAsDecoder(t *testing.T) {
	for _, s := range walkSeeds {
		if got, want := members(nil, []byte(s)), decodedMembers([]byte(s)); !sameFields(got, want) {
			t.Errorf("members(%s) = %q, want %q", s, got, want)
		}
		if got, want := elements([]byte(s)), decodedElements([]byte(s)); !sameRaws(got, want) {
			t.Errorf("elements(%s) = %q, want %q", s, got, want)
		}
	}
}

func FuzzMembersAndElements(f *testing.F) {
	for _, s := range walkSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, e := members(nil, data), elements(data) // never panics, valid or not
		if !json.Valid(data) {
			return
		}
		if want := decodedMembers(data); !sameFields(m, want) {
			t.Fatalf("members(%s) = %q, want %q", data, m, want)
		}
		if want := decodedElements(data); !sameRaws(e, want) {
			t.Fatalf("elements(%s) = %q, want %q", data, e, want)
		}
	})
}
