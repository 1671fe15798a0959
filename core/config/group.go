package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/ggcore/ggcore/core/topic"
)

// Validity limits of the MQTT server certificate
// (Group.CertificateExpiryInMilliseconds): 7 to 30 days, default 7, as v1.
const (
	MinCertificateExpiryMs     = 7 * 24 * 60 * 60 * 1000  // 604800000
	MaxCertificateExpiryMs     = 30 * 24 * 60 * 60 * 1000 // 2592000000
	DefaultCertificateExpiryMs = MinCertificateExpiryMs
)

// Special subscription endpoints (Subscription.Source and Target).
const (
	EndpointCloud  = "cloud"           // the upstream broker (AWS IoT Core)
	EndpointShadow = "GGShadowService" // the local shadow service
)

// Group is a checked group.json: the deployed group, in v1 API field
// names. The lists are never nil after ParseGroup. It marshals back to
// group.json form.
type Group struct {
	GroupId        string `json:"GroupId"`
	GroupVersionId string `json:"GroupVersionId"`
	// CertificateExpiryInMilliseconds is the validity of the MQTT server
	// certificate, 7 to 30 days (default 7).
	CertificateExpiryInMilliseconds int64          `json:"CertificateExpiryInMilliseconds"`
	Cores                           []Thing        `json:"Cores"` // exactly one
	Devices                         []Thing        `json:"Devices"`
	Subscriptions                   []Subscription `json:"Subscriptions"`
	// Functions are v1 Lambda function definitions, kept as written
	// (compacted); each has a valid "FunctionArn".
	Functions []json.RawMessage `json:"Functions"`
	// Resources are v1 resource definitions, kept as written (compacted).
	Resources []json.RawMessage `json:"Resources"`
	// Firmware, when set, is an image release the core installs into its
	// inactive slot and tries (docs/design.md "Firmware updates"); ggcore's
	// own member, not v1's.
	Firmware *Firmware `json:"Firmware,omitempty"`
}

// Firmware is group.json's "Firmware": a signed release file by SHA-256
// (64 lowercase hex digits) and size, fetched like function code.
type Firmware struct {
	Sha256 string `json:"Sha256"`
	Size   int64  `json:"Size"`
}

// Thing is a core or a device of the group.
type Thing struct {
	Id             string `json:"Id"`             // unique within Cores or Devices; [a-zA-Z0-9:_-]{1,128}
	ThingArn       string `json:"ThingArn"`       // arn:aws:iot:REGION:ACCOUNT:thing/NAME
	CertificateArn string `json:"CertificateArn"` // arn:aws:iot:REGION:ACCOUNT:cert/ID
	SyncShadow     bool   `json:"SyncShadow"`
}

// Name is the thing name from ThingArn ("" if ThingArn is not a thing
// ARN): the MQTT client ID the thing must use.
func (t Thing) Name() string {
	name, err := ThingName(t.ThingArn)
	if err != nil {
		return ""
	}
	return name
}

// CertificateID is the certificate ID from CertificateArn ("" if it is
// not a certificate ARN): 64 lowercase hex digits, the SHA-256 of the
// certificate's DER.
func (t Thing) CertificateID() string {
	id, err := CertificateIDFromARN(t.CertificateArn)
	if err != nil {
		return ""
	}
	return id
}

// Subscription allows messages from Source on topics matching Subject to
// reach Target. Source and Target are a thing ARN, "cloud",
// "GGShadowService" or a function ARN.
type Subscription struct {
	Id      string `json:"Id"`
	Source  string `json:"Source"`
	Subject string `json:"Subject"` // MQTT topic filter
	Target  string `json:"Target"`
}

// Core is the group's core (Cores[0]).
func (g *Group) Core() Thing { return g.Cores[0] }

// CertificateExpiry is CertificateExpiryInMilliseconds as a duration.
func (g *Group) CertificateExpiry() time.Duration {
	return time.Duration(g.CertificateExpiryInMilliseconds) * time.Millisecond
}

// ThingByName finds the core or device with the thing name.
func (g *Group) ThingByName(name string) (Thing, bool) {
	return g.findThing(func(t Thing) bool { return name != "" && t.Name() == name })
}

// ThingByCertificateID finds the core or device registered with the
// certificate ID (64 lowercase hex digits).
func (g *Group) ThingByCertificateID(id string) (Thing, bool) {
	return g.findThing(func(t Thing) bool { return id != "" && t.CertificateID() == id })
}

// findThing returns the first core, then device, that match accepts.
func (g *Group) findThing(match func(Thing) bool) (Thing, bool) {
	for _, list := range [][]Thing{g.Cores, g.Devices} {
		for _, t := range list {
			if match(t) {
				return t, true
			}
		}
	}
	return Thing{}, false
}

// LoadGroup reads and checks the group.json at path.
func LoadGroup(path string) (*Group, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	g, err := ParseGroup(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return g, nil
}

// ParseGroup checks a group.json document, or returns every problem found.
func ParseGroup(data []byte) (*Group, error) {
	data, err := document(data)
	if err != nil {
		return nil, err
	}
	g := &Group{
		CertificateExpiryInMilliseconds: DefaultCertificateExpiryMs,
		Cores:                           []Thing{},
		Devices:                         []Thing{},
		Subscriptions:                   []Subscription{},
		Functions:                       []json.RawMessage{},
		Resources:                       []json.RawMessage{},
	}
	w := &walker{}
	listsRead := true // Cores, Devices and Functions are arrays (or absent)
	things := func(dst *[]Thing) func(string, json.RawMessage) {
		return func(p string, v json.RawMessage) {
			listsRead = listsRead && kind(v) == "array"
			w.array(p, v, func(p string, v json.RawMessage) {
				*dst = append(*dst, w.thing(p, v))
			})
		}
	}
	coresKind := "array"          // absent or null count as an empty array
	var funcs []string            // FunctionArn of each Functions entry ("" if none)
	var secrets []*SecretResource // the secret resource of each Resources entry, or nil
	present := w.object("", data, []rule{
		{"GroupId", func(p string, v json.RawMessage) {
			if w.str(p, v, &g.GroupId) {
				if err := checkGroupID(g.GroupId); err != nil {
					w.fail(p, "%v", err)
				}
			}
		}},
		{"GroupVersionId", func(p string, v json.RawMessage) { w.str(p, v, &g.GroupVersionId) }},
		{"CertificateExpiryInMilliseconds", func(p string, v json.RawMessage) {
			var n int64
			if w.integer(p, v, &n) {
				if n < MinCertificateExpiryMs || n > MaxCertificateExpiryMs {
					w.fail(p, "%d ms is not between 7 days (604800000) and 30 days (2592000000)", n)
				}
				g.CertificateExpiryInMilliseconds = n
			}
		}},
		{"Cores", func(p string, v json.RawMessage) { coresKind = kind(v); things(&g.Cores)(p, v) }},
		{"Devices", things(&g.Devices)},
		{"Subscriptions", func(p string, v json.RawMessage) {
			w.array(p, v, func(p string, v json.RawMessage) {
				g.Subscriptions = append(g.Subscriptions, w.subscription(p, v))
			})
		}},
		{"Functions", func(p string, v json.RawMessage) {
			listsRead = listsRead && kind(v) == "array"
			w.array(p, v, func(p string, v json.RawMessage) {
				arn := w.function(p, v)
				funcs = append(funcs, arn)
				g.Functions = append(g.Functions, compact(v))
			})
		}},
		{"Firmware", func(p string, v json.RawMessage) { g.Firmware = w.firmware(p, v) }},
		{"Resources", func(p string, v json.RawMessage) {
			w.array(p, v, func(p string, v json.RawMessage) {
				secrets = append(secrets, w.resource(p, v))
				g.Resources = append(g.Resources, compact(v))
			})
		}},
	})
	if present != nil {
		if !present["GroupId"] {
			w.fail("GroupId", "required: the group's ID")
		}
		if n := len(g.Cores); n != 1 && coresKind == "array" {
			w.fail("Cores", "want exactly one core, got %d", n)
		}
		w.crossCheck(g, funcs, listsRead)
		w.crossCheckResources(secrets)
		for i, raw := range g.Functions {
			w.localFunction(index("Functions", i), raw)
		}
	}
	if err := w.err(); err != nil {
		return nil, err
	}
	return g, nil
}

// checkGroupID reports why id cannot name a group: it is used in control
// plane URL paths and logs.
func checkGroupID(id string) error {
	if id == "" {
		return fmt.Errorf("empty: want the group's ID")
	}
	if len(id) > 128 {
		return fmt.Errorf("%d bytes: a group ID has at most 128", len(id))
	}
	for _, r := range id {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%s contains %q: a group ID has no '/', spaces or control characters", quote(id), r)
		}
	}
	return nil
}

// compact is v compacted, in memory of its own: v is a slice of the
// whole group.json.
func compact(v json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, v); err != nil {
		return bytes.Clone(v)
	}
	return b.Bytes()
}

func (w *walker) thing(path string, raw json.RawMessage) Thing {
	var t Thing
	present := w.object(path, raw, []rule{
		{"Id", func(p string, v json.RawMessage) {
			if w.str(p, v, &t.Id) && !idChars(t.Id) {
				w.fail(p, "%s must be 1-128 characters of a-z A-Z 0-9 : _ -", quote(t.Id))
			}
		}},
		{"ThingArn", func(p string, v json.RawMessage) {
			if w.str(p, v, &t.ThingArn) {
				if _, err := ThingName(t.ThingArn); err != nil {
					w.fail(p, "%v", err)
				}
			}
		}},
		{"CertificateArn", func(p string, v json.RawMessage) {
			if w.str(p, v, &t.CertificateArn) {
				if _, err := CertificateIDFromARN(t.CertificateArn); err != nil {
					w.fail(p, "%v", err)
				}
			}
		}},
		{"SyncShadow", func(p string, v json.RawMessage) { w.boolean(p, v, &t.SyncShadow) }},
	})
	if present != nil {
		for _, f := range []struct{ name, want string }{
			{"Id", "an ID unique in its list, such as the thing name"},
			{"ThingArn", thingARNForm},
			{"CertificateArn", certARNForm},
		} {
			if !present[f.name] {
				w.fail(join(path, f.name), "required: %s", f.want)
			}
		}
	}
	return t
}

func (w *walker) subscription(path string, raw json.RawMessage) Subscription {
	var s Subscription
	present := w.object(path, raw, []rule{
		{"Id", func(p string, v json.RawMessage) {
			if w.str(p, v, &s.Id) && !idChars(s.Id) {
				w.fail(p, "%s must be 1-128 characters of a-z A-Z 0-9 : _ -", quote(s.Id))
			}
		}},
		{"Source", func(p string, v json.RawMessage) { w.endpoint(p, v, &s.Source) }},
		{"Subject", func(p string, v json.RawMessage) {
			if w.str(p, v, &s.Subject) {
				if err := topic.ValidFilter(s.Subject); err != nil {
					w.fail(p, "not an MQTT topic filter (%v): want a filter such as sensors/+/temperature or sensors/#", err)
				}
			}
		}},
		{"Target", func(p string, v json.RawMessage) { w.endpoint(p, v, &s.Target) }},
	})
	if present != nil {
		for _, f := range []string{"Id", "Source", "Subject", "Target"} {
			if !present[f] {
				w.fail(join(path, f), "required")
			}
		}
	}
	return s
}

// endpoint reads a Source or Target; whether it exists is checked once
// the whole group is read.
func (w *walker) endpoint(path string, raw json.RawMessage, dst *string) {
	if w.str(path, raw, dst) && *dst == "" {
		w.fail(path, "empty: %s", endpointWant)
	}
}

// function checks one Functions entry and returns its FunctionArn as
// written (valid or not), or "" if it has none. Other members are kept
// unchecked.
func (w *walker) function(path string, raw json.RawMessage) string {
	if k := kind(raw); k != "object" {
		w.fail(path, "want a JSON object (a v1 function definition with FunctionArn), got %s", k)
		return ""
	}
	var arn string
	found := false
	for _, m := range members(nil, raw) {
		if m.name != "FunctionArn" {
			continue
		}
		p := join(path, m.name)
		if found {
			w.fail(p, "appears more than once: keep one")
			return ""
		}
		found = true
		if !w.str(p, m.value, &arn) {
			return ""
		}
		if err := checkFunctionARN(arn); err != nil {
			w.fail(p, "%v", err)
		}
	}
	if !found {
		w.fail(join(path, "FunctionArn"), "required: %s", functionARNForm)
	}
	return arn
}

// crossCheck checks what relates entries to each other: unique IDs,
// names and certificates, and subscription endpoints that exist.
func (w *walker) crossCheck(g *Group, funcs []string, complete bool) {
	// Every ThingArn and FunctionArn as written, valid or not: a broken
	// entry is reported where it is, not again at each subscription.
	// The maps hold where an entry is, its path made only for an error:
	// a group of a thousand devices is checked without a thousand paths.
	n := len(g.Cores) + len(g.Devices)
	thingARNs := make(map[string]bool, n)
	// complete: every thing and function could be read with its ARN.
	names := make(map[string]entryAt, n) // thing name -> its first thing
	certs := make(map[string]entryAt, n) // certificate ID -> its thing
	for _, l := range []struct {
		path   string
		things []Thing
	}{{"Cores", g.Cores}, {"Devices", g.Devices}} {
		ids := make(map[string]int, len(l.things))
		for i, t := range l.things {
			at := entryAt{l.path, i}
			if t.Id != "" {
				if first, dup := ids[t.Id]; dup {
					w.fail(join(at.path(), "Id"), "%s is already the Id of %s: Ids must be unique", quote(t.Id), index(l.path, first))
				} else {
					ids[t.Id] = i
				}
			}
			thingARNs[t.ThingArn] = true
			complete = complete && t.ThingArn != ""
			if name := t.Name(); name != "" {
				if first, dup := names[name]; dup {
					w.fail(join(at.path(), "ThingArn"), "thing name %s is already used by %s: each thing may appear once", quote(name), first.path())
				} else {
					names[name] = at
				}
			}
			if id := t.CertificateID(); id != "" {
				if first, dup := certs[id]; dup {
					w.fail(join(at.path(), "CertificateArn"), "certificate %s is already registered for %s: each thing needs its own certificate",
						id, first.path())
				} else {
					certs[id] = at
				}
			}
		}
	}
	functions := make(map[string]bool)
	for i, arn := range funcs {
		if arn == "" {
			complete = false
			continue
		}
		if functions[arn] && checkFunctionARN(arn) == nil {
			w.fail(join(index("Functions", i), "FunctionArn"), "%s is listed twice", quote(arn))
		}
		functions[arn] = true
	}
	subIDs := make(map[string]int, len(g.Subscriptions))
	for i, s := range g.Subscriptions {
		at := entryAt{"Subscriptions", i}
		if s.Id != "" {
			if first, dup := subIDs[s.Id]; dup {
				w.fail(join(at.path(), "Id"), "%s is already the Id of %s: Ids must be unique", quote(s.Id), index("Subscriptions", first))
			} else {
				subIDs[s.Id] = i
			}
		}
		for _, e := range []struct{ name, value string }{{"Source", s.Source}, {"Target", s.Target}} {
			if e.value == "" {
				continue // reported by subscription
			}
			if reason := endpointProblem(e.value, thingARNs, functions, complete); reason != "" {
				w.fail(join(at.path(), e.name), "%s", reason)
			}
		}
		if s.Source != "" && s.Source == s.Target {
			w.fail(join(at.path(), "Target"), "same as Source: a subscription routes from one endpoint to another")
		}
	}
}

// entryAt is where an entry is in the group: its list and index.
type entryAt struct {
	list string // "Cores", "Devices" or "Subscriptions"
	i    int
}

// path is the entry's JSON path, such as Devices[3].
func (a entryAt) path() string { return index(a.list, a.i) }

const endpointWant = `want a thing ARN of a core or device in this group, "cloud", "GGShadowService", or a function ARN listed in Functions`

// endpointProblem says why s is not a usable Source or Target of this
// group, or "". With complete false some thing or function could not be
// read, so a well-formed ARN missing from the group is not reported.
func endpointProblem(s string, things, functions map[string]bool, complete bool) string {
	switch {
	case s == EndpointCloud || s == EndpointShadow || things[s] || functions[s]:
		return ""
	case strings.EqualFold(s, EndpointCloud):
		return fmt.Sprintf("%s: did you mean %q? (case-sensitive)", quote(s), EndpointCloud)
	case strings.EqualFold(s, EndpointShadow):
		return fmt.Sprintf("%s: did you mean %q? (case-sensitive)", quote(s), EndpointShadow)
	}
	if _, err := ThingName(s); err == nil {
		if !complete {
			return ""
		}
		return fmt.Sprintf("thing %s is not a core or device of this group: add it to Devices, or fix the ARN", quote(s))
	}
	if err := checkFunctionARN(s); err == nil {
		if !complete {
			return ""
		}
		return fmt.Sprintf("function %s is not listed in Functions", quote(s))
	}
	if strings.HasPrefix(s, "arn:") {
		parts := strings.SplitN(s, ":", 4)
		if len(parts) > 2 && parts[2] == "lambda" {
			return checkFunctionARN(s).Error()
		}
		_, err := ThingName(s)
		return err.Error()
	}
	return fmt.Sprintf("%s: %s", quote(s), endpointWant)
}

// Cloud spooler settings, as v1 read them from its GGCloudSpooler system
// function's environment.
const (
	// DefaultSpoolMaxBytes is the outbound spool's size when the group
	// does not set GG_CONFIG_MAX_SIZE_BYTES: 2.5 MB, as v1.
	DefaultSpoolMaxBytes = 2621440
	// MinSpoolMaxBytes is the smallest GG_CONFIG_MAX_SIZE_BYTES v1 takes.
	MinSpoolMaxBytes = 262144
	spoolerFunction  = "arn:aws:lambda:::function:GGCloudSpooler:"
)

// SpoolMaxBytes is the outbound cloud spool's size: the
// GG_CONFIG_MAX_SIZE_BYTES environment variable of the group's
// GGCloudSpooler function (arn:aws:lambda:::function:GGCloudSpooler:1),
// or 2.5 MB without one. A value below 262144 or not a number is an error
// naming its path, as v1 refused to start with it.
func (g *Group) SpoolMaxBytes() (int64, error) {
	for i, raw := range g.Functions {
		var f struct {
			FunctionArn           string
			FunctionConfiguration struct {
				Environment struct {
					Variables map[string]string
				}
			}
		}
		if json.Unmarshal(raw, &f) != nil || !strings.HasPrefix(f.FunctionArn, spoolerFunction) {
			continue
		}
		v, ok := f.FunctionConfiguration.Environment.Variables["GG_CONFIG_MAX_SIZE_BYTES"]
		if !ok {
			return DefaultSpoolMaxBytes, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < MinSpoolMaxBytes {
			return 0, fmt.Errorf("Functions[%d].FunctionConfiguration.Environment.Variables.GG_CONFIG_MAX_SIZE_BYTES: %q: want a number of bytes >= %d",
				i, v, MinSpoolMaxBytes)
		}
		return n, nil
	}
	return DefaultSpoolMaxBytes, nil
}

// firmware reads group.json's "Firmware" member.
func (w *walker) firmware(path string, raw json.RawMessage) *Firmware {
	var f Firmware
	present := w.object(path, raw, []rule{
		{"Sha256", func(p string, v json.RawMessage) {
			if w.str(p, v, &f.Sha256) && !isSHA256Hex(f.Sha256) {
				w.fail(p, "%s: want 64 lowercase hex digits", quote(f.Sha256))
			}
		}},
		{"Size", func(p string, v json.RawMessage) {
			if w.integer(p, v, &f.Size) && f.Size <= 0 {
				w.fail(p, "%d: want a positive number of bytes", f.Size)
			}
		}},
	})
	if present == nil {
		return nil
	}
	for _, name := range []string{"Sha256", "Size"} {
		if !present[name] {
			w.fail(join(path, name), "required")
		}
	}
	return &f
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
