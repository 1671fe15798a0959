// Package policy parses AWS IoT policy documents and decides whether they
// allow an action on a resource, as AWS IoT did for Greengrass v1's
// cloud calls: an explicit Deny wins, then any Allow, else the call is
// denied. Actions match case-insensitively, resources case-sensitively;
// both take the wildcards '*' (any run of characters) and '?' (one
// character). The policy variable ${iot:Connection.Thing.ThingName}
// stands for the caller's thing name.
package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

//lint:file-ignore ST1005 errors begin with the document field they are about, spelled as in the policy ("Version: ...", "Statement[0].Effect: missing").

// Effect is a statement's effect.
type Effect string

// The effects of a statement.
const (
	Allow Effect = "Allow"
	Deny  Effect = "Deny"
)

// thingNameVar is the one policy variable ggcloud knows.
const thingNameVar = "${iot:Connection.Thing.ThingName}"

// Statement is one statement of a policy document.
type Statement struct {
	Effect   Effect
	Actions  []string
	Resource []string
}

// Document is a parsed policy document.
type Document struct {
	Name       string // for decisions: which policy decided
	Version    string
	Statements []Statement
}

// Request is one call to decide on.
type Request struct {
	Action    string // e.g. greengrass:CreateCertificate
	Resource  string // e.g. arn:aws:iot:us-east-1:000000000000:thing/core
	ThingName string // the caller's thing name, for ${iot:Connection.Thing.ThingName}
}

// Decision says whether a request is allowed and why.
type Decision struct {
	Allowed bool
	// Reason names the policy and statement that decided, or says that
	// nothing allowed the call.
	Reason string
}

// Parse parses a policy document named name. Errors name the statement
// and field at fault, all of them at once.
func Parse(name string, data []byte) (*Document, error) {
	var raw struct {
		Version   string
		Statement json.RawMessage
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("policy %s: data after the document", name)
	}
	d := &Document{Name: name, Version: raw.Version}
	var errs []error
	if raw.Version != "2012-10-17" {
		errs = append(errs, fmt.Errorf("Version: %q, want \"2012-10-17\"", raw.Version))
	}
	var stmts []json.RawMessage
	switch {
	case len(raw.Statement) == 0:
		errs = append(errs, errors.New("Statement: missing"))
	case raw.Statement[0] == '[':
		if err := json.Unmarshal(raw.Statement, &stmts); err != nil {
			errs = append(errs, fmt.Errorf("Statement: %v", err))
		}
	default:
		stmts = []json.RawMessage{raw.Statement}
	}
	for i, s := range stmts {
		st, err := parseStatement(s)
		switch {
		case errors.Is(err, errNotObject):
			errs = append(errs, fmt.Errorf("Statement[%d]: %w", i, err))
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("Statement[%d].%w", i, err))
			continue
		}
		d.Statements = append(d.Statements, st)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("policy %s: %w", name, err)
	}
	return d, nil
}

var errNotObject = errors.New("want an object with Effect, Action and Resource")

func parseStatement(data json.RawMessage) (Statement, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return Statement{}, errNotObject
	}
	var st Statement
	for k, v := range raw {
		var err error
		switch k {
		case "Effect":
			var e string
			if err = json.Unmarshal(v, &e); err == nil && e != string(Allow) && e != string(Deny) {
				err = fmt.Errorf("%q, want Allow or Deny", e)
			}
			st.Effect = Effect(e)
		case "Action":
			st.Actions, err = stringOrList(v)
			for _, a := range st.Actions {
				if err == nil && a != "*" && !strings.Contains(a, ":") {
					err = fmt.Errorf("%q is not service:Action", a)
				}
			}
		case "Resource":
			st.Resource, err = stringOrList(v)
		case "Sid":
		case "Condition", "NotAction", "NotResource", "Principal":
			err = errors.New("not supported by ggcloud; use Effect, Action and Resource")
		default:
			err = errors.New("unknown field")
		}
		if err == nil && (k == "Action" || k == "Resource") {
			err = checkVariables(v)
		}
		if err != nil {
			return st, fmt.Errorf("%s: %w", k, err)
		}
	}
	switch {
	case st.Effect == "":
		return st, errors.New("Effect: missing")
	case len(st.Actions) == 0:
		return st, errors.New("Action: missing")
	case len(st.Resource) == 0:
		return st, errors.New("Resource: missing")
	}
	return st, nil
}

// stringOrList decodes a JSON string or list of strings, none empty.
func stringOrList(v json.RawMessage) ([]string, error) {
	var one string
	if err := json.Unmarshal(v, &one); err == nil {
		v = json.RawMessage(fmt.Sprintf("[%q]", one))
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, errors.New("want a string or a list of strings")
	}
	for _, s := range list {
		if s == "" {
			return nil, errors.New("empty string")
		}
	}
	return list, nil
}

// checkVariables refuses policy variables other than the thing name.
func checkVariables(v json.RawMessage) error {
	s := string(v)
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			return nil
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return fmt.Errorf("unterminated policy variable %q", s[i:])
		}
		if name := s[i : i+end+1]; name != thingNameVar {
			return fmt.Errorf("policy variable %s is not supported (only %s)", name, thingNameVar)
		}
		s = s[i+end+1:]
	}
}

// Decide evaluates req against every document attached to the caller.
func Decide(docs []*Document, req Request) Decision {
	var allowedBy string
	for _, d := range docs {
		for i, st := range d.Statements {
			if !st.matches(req) {
				continue
			}
			by := fmt.Sprintf("policy %s Statement[%d]", d.Name, i)
			if st.Effect == Deny {
				return Decision{Allowed: false, Reason: fmt.Sprintf("%s denies %s on %s", by, req.Action, req.Resource)}
			}
			if allowedBy == "" {
				allowedBy = by
			}
		}
	}
	if allowedBy != "" {
		return Decision{Allowed: true, Reason: fmt.Sprintf("%s allows %s on %s", allowedBy, req.Action, req.Resource)}
	}
	return Decision{Reason: fmt.Sprintf("no policy allows %s on %s", req.Action, req.Resource)}
}

func (st Statement) matches(req Request) bool {
	actionOK := false
	for _, a := range st.Actions {
		if match(strings.ToLower(a), strings.ToLower(req.Action)) {
			actionOK = true
			break
		}
	}
	if !actionOK {
		return false
	}
	for _, r := range st.Resource {
		if strings.Contains(r, thingNameVar) {
			if req.ThingName == "" {
				continue // a caller with no thing matches no thing-scoped resource
			}
			r = strings.ReplaceAll(r, thingNameVar, quoteWildcards(req.ThingName))
		}
		if match(r, req.Resource) {
			return true
		}
	}
	return false
}

// quoteWildcards keeps a substituted thing name from acting as a
// wildcard: thing names cannot hold '*' or '?', but a bad certificate
// must not widen a policy.
func quoteWildcards(s string) string {
	return strings.NewReplacer("*", "\x00", "?", "\x00").Replace(s)
}

// match reports whether s matches pattern, where '*' matches any run of
// characters and '?' exactly one. It runs in O(len(pattern)·len(s)).
func match(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
