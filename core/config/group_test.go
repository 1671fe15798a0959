package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// certID is a stand-in certificate ID for name.
func certID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

const (
	coreARN = "arn:aws:iot:us-east-1:000000000000:thing/core"
	dev1ARN = "arn:aws:iot:us-east-1:000000000000:thing/dev1"
	dev2ARN = "arn:aws:iot:us-east-1:000000000000:thing/dev2"
	funcARN = "arn:aws:lambda:us-east-1:000000000000:function:filter:3"
)

func certARN(name string) string { return "arn:aws:iot:us-east-1:000000000000:cert/" + certID(name) }

// goldenGroup is the group.json example of docs/design.md with real-looking IDs.
var goldenGroup = fmt.Sprintf(`{ "GroupId": "g1", "GroupVersionId": "1", "CertificateExpiryInMilliseconds": 604800000,
  "Cores": [{"Id": "core", "ThingArn": %q,
             "CertificateArn": %q, "SyncShadow": true}],
  "Devices": [{"Id": "dev1", "ThingArn": %q,
               "CertificateArn": %q, "SyncShadow": false}],
  "Subscriptions": [{"Id": "s1", "Source": %q,
                     "Subject": "sensors/dev1/#", "Target": "cloud"}],
  "Functions": [], "Resources": [] }`, coreARN, certARN("core"), dev1ARN, certARN("dev1"), dev1ARN)

// fullGroup uses every kind of endpoint.
var fullGroup = fmt.Sprintf(`{
  "GroupId": "4b6e3a52-0f4c-4d6b-9d53-1f0c9f0a8c11", "GroupVersionId": "7",
  "CertificateExpiryInMilliseconds": 2592000000,
  "Cores": [{"Id": "core", "ThingArn": %[1]q, "CertificateArn": %[2]q, "SyncShadow": true}],
  "Devices": [
    {"Id": "dev1", "ThingArn": %[3]q, "CertificateArn": %[4]q},
    {"Id": "dev2", "ThingArn": %[5]q, "CertificateArn": %[6]q, "SyncShadow": true}
  ],
  "Subscriptions": [
    {"Id": "s1", "Source": %[3]q, "Subject": "sensors/dev1/#", "Target": "cloud"},
    {"Id": "s2", "Source": "cloud", "Subject": "commands/+/dev2", "Target": %[5]q},
    {"Id": "s3", "Source": %[3]q, "Subject": "$aws/things/dev1/shadow/update", "Target": "GGShadowService"},
    {"Id": "s4", "Source": %[3]q, "Subject": "raw/#", "Target": %[7]q},
    {"Id": "s5", "Source": %[7]q, "Subject": "filtered/#", "Target": %[1]q}
  ],
  "Functions": [ {"Id": "f1", "FunctionArn": %[7]q, "FunctionConfiguration": {"MemorySize": 16384, "Pinned": true, "Timeout": 3}} ],
  "Resources": [ {"Id": "r1", "Name": "tmp", "ResourceDataContainer": {}} ]
}`, coreARN, certARN("core"), dev1ARN, certARN("dev1"), dev2ARN, certARN("dev2"), funcARN)

func TestParseGroupGolden(t *testing.T) {
	g, err := ParseGroup([]byte(goldenGroup))
	if err != nil {
		t.Fatal(err)
	}
	want := &Group{
		GroupId: "g1", GroupVersionId: "1", CertificateExpiryInMilliseconds: 604800000,
		Cores:         []Thing{{Id: "core", ThingArn: coreARN, CertificateArn: certARN("core"), SyncShadow: true}},
		Devices:       []Thing{{Id: "dev1", ThingArn: dev1ARN, CertificateArn: certARN("dev1")}},
		Subscriptions: []Subscription{{Id: "s1", Source: dev1ARN, Subject: "sensors/dev1/#", Target: "cloud"}},
		Functions:     []json.RawMessage{}, Resources: []json.RawMessage{},
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("got  %+v\nwant %+v", g, want)
	}
	if g.Core().Name() != "core" || g.Devices[0].Name() != "dev1" || g.Devices[0].CertificateID() != certID("dev1") {
		t.Errorf("Name/CertificateID: %q %q %q", g.Core().Name(), g.Devices[0].Name(), g.Devices[0].CertificateID())
	}
	if g.CertificateExpiry() != 7*24*time.Hour {
		t.Errorf("CertificateExpiry = %v", g.CertificateExpiry())
	}
}

func TestParseGroupFull(t *testing.T) {
	g, err := ParseGroup([]byte(fullGroup))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Devices) != 2 || len(g.Subscriptions) != 5 || len(g.Functions) != 1 || len(g.Resources) != 1 {
		t.Fatalf("lists: %+v", g)
	}
	if got := string(g.Functions[0]); !strings.HasPrefix(got, `{"Id":"f1","FunctionArn":`) {
		t.Errorf("function kept as %s", got)
	}
	if g.CertificateExpiry() != 30*24*time.Hour {
		t.Errorf("CertificateExpiry = %v", g.CertificateExpiry())
	}
}

func TestParseGroupDefaults(t *testing.T) {
	d := parseDoc(t, goldenGroup).del("CertificateExpiryInMilliseconds").del("Devices").del("Subscriptions").
		del("Functions").del("Resources").del("GroupVersionId")
	g, err := ParseGroup(d.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if g.CertificateExpiryInMilliseconds != DefaultCertificateExpiryMs {
		t.Errorf("default expiry = %d", g.CertificateExpiryInMilliseconds)
	}
	if g.Devices == nil || g.Subscriptions == nil || g.Functions == nil || g.Resources == nil {
		t.Errorf("nil lists: %+v", g)
	}
	d = parseDoc(t, goldenGroup).set("Devices", nil).set("Subscriptions", nil)
	if _, err := ParseGroup(d.bytes()); err != nil {
		t.Errorf("null lists: %v", err)
	}
}

func TestGroupLookups(t *testing.T) {
	g, err := ParseGroup([]byte(fullGroup))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert string
		wantARN    string
	}{
		{"core", certID("core"), coreARN},
		{"dev2", certID("dev2"), dev2ARN},
		{"dev3", certID("dev3"), ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		th, ok := g.ThingByName(tt.name)
		if ok != (tt.wantARN != "") || th.ThingArn != tt.wantARN {
			t.Errorf("ThingByName(%q) = %+v, %v", tt.name, th, ok)
		}
		th, ok = g.ThingByCertificateID(tt.cert)
		if ok != (tt.wantARN != "") || th.ThingArn != tt.wantARN {
			t.Errorf("ThingByCertificateID(%q) = %+v, %v", tt.cert, th, ok)
		}
	}
	if _, ok := g.ThingByCertificateID(strings.ToUpper(certID("core"))); ok {
		t.Error("upper-case certificate ID found a thing")
	}
}

func TestThingNameAndCertificateIDOfInvalidARNs(t *testing.T) {
	th := Thing{ThingArn: "arn:aws:iot:us-east-1:000000000000:cert/x", CertificateArn: "arn:aws:iot:us-east-1:000000000000:thing/x"}
	if th.Name() != "" || th.CertificateID() != "" {
		t.Errorf("Name %q, CertificateID %q; want empty", th.Name(), th.CertificateID())
	}
}

func TestParseGroupProblems(t *testing.T) {
	base := parseDoc(t, fullGroup)
	dup := map[string]any{"Id": "dev3", "ThingArn": dev1ARN, "CertificateArn": certARN("dev3")}
	dupCert := map[string]any{"Id": "dev3", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/dev3", "CertificateArn": certARN("dev1")}
	dupCoreCert := map[string]any{"Id": "dev3", "ThingArn": "arn:aws:iot:us-east-1:000000000000:thing/dev3", "CertificateArn": certARN("core")}
	sub := func(id, src, subject, dst string) map[string]any {
		return map[string]any{"Id": id, "Source": src, "Subject": subject, "Target": dst}
	}
	tests := []struct {
		name         string
		doc          doc
		path, reason string
	}{
		{"no GroupId", base.del("GroupId"), "GroupId", "required"},
		{"empty GroupId", base.set("GroupId", ""), "GroupId", "empty"},
		{"slash GroupId", base.set("GroupId", "a/b"), "GroupId", "no '/'"},
		{"GroupId type", base.set("GroupId", 1), "GroupId", "want a string, got number"},
		{"expiry low", base.set("CertificateExpiryInMilliseconds", 604799999), "CertificateExpiryInMilliseconds", "between 7 days (604800000) and 30 days (2592000000)"},
		{"expiry high", base.set("CertificateExpiryInMilliseconds", 2592000001), "CertificateExpiryInMilliseconds", "between 7 days"},
		{"expiry fraction", base.set("CertificateExpiryInMilliseconds", 6.048e8+0.5), "CertificateExpiryInMilliseconds", "whole number"},
		{"no core", base.del("Cores"), "Cores", "want exactly one core, got 0"},
		{"two cores", base.set("Cores", append(base["Cores"].([]any), base["Devices"].([]any)[0])), "Cores", "got 2"},
		{"Cores not array", base.set("Cores", map[string]any{}), "Cores", "want a JSON array, got object"},
		{"device not object", base.set("Devices.0", "dev1"), "Devices[0]", "want a JSON object, got string"},
		{"device no Id", base.del("Devices.1.Id"), "Devices[1].Id", "required"},
		{"device bad Id", base.set("Devices.1.Id", "dev 2"), "Devices[1].Id", "a-z A-Z 0-9 : _ -"},
		{"device dup Id", base.set("Devices.1.Id", "dev1"), "Devices[1].Id", `"dev1" is already the Id of Devices[0]`},
		{"device no ThingArn", base.del("Devices.0.ThingArn"), "Devices[0].ThingArn", "required: arn:aws:iot:REGION:ACCOUNT:thing/NAME"},
		{"device bad ThingArn", base.set("Devices.0.ThingArn", "arn:aws:iot:us-east-1:000000000000:thing/dev 1"), "Devices[0].ThingArn", "thing name"},
		{"device no cert", base.del("Devices.0.CertificateArn"), "Devices[0].CertificateArn", "required"},
		{"cert upper hex", base.set("Devices.0.CertificateArn", strings.ToUpper(certARN("dev1")[:40])+certARN("dev1")[40:]), "Devices[0].CertificateArn", "not a certificate ARN"},
		{"cert ID upper", base.set("Devices.0.CertificateArn", "arn:aws:iot:us-east-1:000000000000:cert/"+strings.ToUpper(certID("dev1"))),
			"Devices[0].CertificateArn", "not 64 lowercase hex digits"},
		{"cert ID short", base.set("Devices.0.CertificateArn", "arn:aws:iot:us-east-1:000000000000:cert/abc"), "Devices[0].CertificateArn", "not 64 lowercase hex digits"},
		{"cert ARN is thing", base.set("Devices.0.CertificateArn", dev1ARN), "Devices[0].CertificateArn", "does not start with cert/"},
		{"SyncShadow type", base.set("Devices.0.SyncShadow", "true"), "Devices[0].SyncShadow", "want true or false"},
		{"unknown thing field", base.set("Devices.0.Name", "x"), "Devices[0].Name", "unknown field"},
		{"dup thing name", base.set("Devices", append(base["Devices"].([]any), dup)), "Devices[2].ThingArn", `thing name "dev1" is already used by Devices[0]`},
		{"dup core name", base.set("Devices.0.ThingArn", coreARN), "Devices[0].ThingArn", `thing name "core" is already used by Cores[0]`},
		{"dup cert", base.set("Devices", append(base["Devices"].([]any), dupCert)), "Devices[2].CertificateArn", "already registered for Devices[0]"},
		{"dup cert with core", base.set("Devices", append(base["Devices"].([]any), dupCoreCert)), "Devices[2].CertificateArn", "already registered for Cores[0]"},
		{"sub no Id", base.del("Subscriptions.0.Id"), "Subscriptions[0].Id", "required"},
		{"sub dup Id", base.set("Subscriptions.2.Id", "s1"), "Subscriptions[2].Id", `"s1" is already the Id of Subscriptions[0]`},
		{"sub bad Id", base.set("Subscriptions.2.Id", "s 1"), "Subscriptions[2].Id", "a-z A-Z"},
		{"sub unknown field", base.set("Subscriptions.2.Targt", "cloud"), "Subscriptions[2].Targt", `unknown field; did you mean "Target"?`},
		{"sub no Subject", base.del("Subscriptions.1.Subject"), "Subscriptions[1].Subject", "required"},
		{"sub bad Subject", base.set("Subscriptions.1.Subject", "a/#/b"), "Subscriptions[1].Subject", "not an MQTT topic filter"},
		{"sub bad plus", base.set("Subscriptions.1.Subject", "a+/b"), "Subscriptions[1].Subject", "'+' must occupy a whole level"},
		{"sub empty Subject", base.set("Subscriptions.1.Subject", ""), "Subscriptions[1].Subject", "not an MQTT topic filter"},
		{"sub no Source", base.del("Subscriptions.0.Source"), "Subscriptions[0].Source", "required"},
		{"sub empty Source", base.set("Subscriptions.0.Source", ""), "Subscriptions[0].Source", "empty: want a thing ARN"},
		{"sub no Target", base.del("Subscriptions.0.Target"), "Subscriptions[0].Target", "required"},
		{"sub unknown thing", base.set("Subscriptions.0.Source", "arn:aws:iot:us-east-1:000000000000:thing/dev9"), "Subscriptions[0].Source",
			"is not a core or device of this group"},
		{"sub bad ARN", base.set("Subscriptions.0.Target", "arn:aws:iot:us-east-1:0:thing/dev1"), "Subscriptions[0].Target", "12-digit account"},
		{"sub bad function ARN", base.set("Subscriptions.0.Target", "arn:aws:lambda:us-east-1:000000000000:fn:x"), "Subscriptions[0].Target", "not a function ARN"},
		{"sub unlisted function", base.set("Subscriptions.0.Target", "arn:aws:lambda:us-east-1:000000000000:function:other:1"), "Subscriptions[0].Target",
			"not listed in Functions"},
		{"sub Cloud", base.set("Subscriptions.0.Target", "Cloud"), "Subscriptions[0].Target", `did you mean "cloud"?`},
		{"sub shadow case", base.set("Subscriptions.0.Target", "ggshadowservice"), "Subscriptions[0].Target", `did you mean "GGShadowService"?`},
		{"sub nonsense", base.set("Subscriptions.0.Target", "devices"), "Subscriptions[0].Target", `want a thing ARN of a core or device in this group, "cloud"`},
		{"sub self", base.set("Subscriptions", []any{sub("x", dev1ARN, "a", dev1ARN)}), "Subscriptions[0].Target", "same as Source"},
		{"sub cloud to cloud", base.set("Subscriptions", []any{sub("x", "cloud", "a", "cloud")}), "Subscriptions[0].Target", "same as Source"},
		{"sub not object", base.set("Subscriptions.0", []any{}), "Subscriptions[0]", "want a JSON object, got array"},
		{"function no ARN", base.set("Functions.0", map[string]any{"Id": "f1"}), "Functions[0].FunctionArn", "required: arn:aws:lambda:"},
		{"function bad ARN", base.set("Functions.0.FunctionArn", "arn:aws:lambda:us-east-1:000000000000:function:bad name"), "Functions[0].FunctionArn", "function name"},
		{"function ARN type", base.set("Functions.0.FunctionArn", 3), "Functions[0].FunctionArn", "want a string"},
		{"function not object", base.set("Functions.0", "f"), "Functions[0]", "want a JSON object"},
		{"function twice", base.set("Functions", append(base["Functions"].([]any), base["Functions"].([]any)[0])), "Functions[1].FunctionArn", "listed twice"},
		{"resource not object", base.set("Resources.0", 1), "Resources[0]", "want a JSON object"},
		{"unknown top", base.set("Loggers", []any{}), "Loggers", "unknown field"},
		{"case top", base.set("groupId", "x"), "groupId", `did you mean "GroupId"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGroup(tt.doc.bytes())
			wantProblem(t, err, tt.path, tt.reason)
		})
	}
}

func TestParseGroupDocument(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"array", "[]", "want a JSON object, got array"},
		{"syntax", `{"GroupId": "g1",}`, "invalid JSON at line 1, column 18"},
		{"duplicate member", `{"GroupId": "a", "GroupId": "b", "Cores": []}`, "GroupId: appears more than once"},
		{"too big", `{"Resources": [` + strings.Repeat(`{},`, MaxFileSize/3) + `{}]}`, "4 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGroup([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestLoadGroup(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "group.json")
	if err := os.WriteFile(p, []byte(fullGroup), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGroup(p); err != nil {
		t.Fatal(err)
	}
	d := parseDoc(t, fullGroup).set("Subscriptions.2.Targt", "cloud").set("Subscriptions.3.Subject", "#/x")
	if err := os.WriteFile(p, d.bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadGroup(p)
	if err == nil || !strings.HasPrefix(err.Error(), "config: "+p+": ") {
		t.Fatalf("err = %v, want it to start with the file", err)
	}
	wantProblem(t, err, "Subscriptions[2].Targt", "unknown field")
	wantProblem(t, err, "Subscriptions[3].Subject", "not an MQTT topic filter")
	if _, err := LoadGroup(filepath.Join(dir, "none.json")); err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGroupMarshalRoundTrip(t *testing.T) {
	for _, in := range []string{goldenGroup, fullGroup} {
		g, err := ParseGroup([]byte(in))
		if err != nil {
			t.Fatal(err)
		}
		out, err := json.MarshalIndent(g, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		g2, err := ParseGroup(out)
		if err != nil {
			t.Fatalf("re-parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(g, g2) {
			t.Errorf("round trip changed the group:\n%+v\n%+v", g, g2)
		}
	}
}

// A broken entry is reported once, where it is, not again at every
// subscription that names it.
func TestParseGroupNoCascade(t *testing.T) {
	base := parseDoc(t, fullGroup)
	tests := []struct {
		name string
		doc  doc
		path string
	}{
		{"device not object", base.set("Devices.0", 1), "Devices[0]"},
		{"device without ARN", base.del("Devices.0.ThingArn"), "Devices[0].ThingArn"},
		{"Cores not array", base.set("Cores", map[string]any{}), "Cores"},
		{"function not object", base.set("Functions.0", 1), "Functions[0]"},
		{"function with bad ARN", base.set("Functions.0.FunctionArn", 1), "Functions[0].FunctionArn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseGroup(tt.doc.bytes())
			ps := problems(err)
			if len(ps) != 1 || ps[0].Path != tt.path {
				t.Errorf("want one problem at %s, got:\n%v", tt.path, err)
			}
		})
	}
}

func TestSpoolMaxBytes(t *testing.T) {
	spooler := func(env string) string {
		return `{"Id":"spooler","FunctionArn":"arn:aws:lambda:::function:GGCloudSpooler:1","FunctionConfiguration":{"Environment":{"Variables":` + env + `}}}`
	}
	for _, tc := range []struct {
		name, functions string
		want            int64
		err             string
	}{
		{"no functions", `[]`, DefaultSpoolMaxBytes, ""},
		{"spooler without size", `[` + spooler(`{"GG_CONFIG_STORAGE_TYPE":"FileSystem"}`) + `]`, DefaultSpoolMaxBytes, ""},
		{"spooler with size", `[` + spooler(`{"GG_CONFIG_MAX_SIZE_BYTES":"5242880"}`) + `]`, 5242880, ""},
		{"too small", `[` + spooler(`{"GG_CONFIG_MAX_SIZE_BYTES":"1024"}`) + `]`, 0, "Functions[0].FunctionConfiguration.Environment.Variables.GG_CONFIG_MAX_SIZE_BYTES"},
		{"not a number", `[` + spooler(`{"GG_CONFIG_MAX_SIZE_BYTES":"lots"}`) + `]`, 0, `"lots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"GroupId":"g1","Cores":[{"Id":"c","ThingArn":"arn:aws:iot:us-east-1:000000000000:thing/core",
				"CertificateArn":"arn:aws:iot:us-east-1:000000000000:cert/` + strings.Repeat("a", 64) + `"}],
				"Devices":[],"Subscriptions":[],"Functions":` + tc.functions + `}`
			g, err := ParseGroup([]byte(doc))
			if err != nil {
				t.Fatalf("ParseGroup: %v", err)
			}
			got, err := g.SpoolMaxBytes()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("SpoolMaxBytes = %d, %v; want an error naming %s", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("SpoolMaxBytes = %d, %v; want %d", got, err, tc.want)
			}
		})
	}
}
