package policy

import (
	"strings"
	"testing"
)

// minimal is Greengrass v1's "Minimal AWS IoT Policy for the AWS IoT Greengrass
// Core Device", with region, account, core name and group id filled in.
const minimal = `{ "Version": "2012-10-17", "Statement": [
 { "Effect": "Allow", "Action": [ "iot:Connect" ], "Resource": [ "*" ] },
 { "Effect": "Allow", "Action": [ "iot:Publish", "iot:Subscribe", "iot:Receive" ], "Resource": [ "arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/gw-*", "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/gw-*" ] },
 { "Effect": "Allow", "Action": [ "iot:GetThingShadow", "iot:UpdateThingShadow", "iot:DeleteThingShadow" ], "Resource": [ "arn:aws:iot:us-east-1:123456789012:thing/gw-*" ] },
 { "Effect": "Allow", "Action": [ "greengrass:AssumeRoleForGroup", "greengrass:CreateCertificate" ], "Resource": [ "*" ] },
 { "Effect": "Allow", "Action": [ "greengrass:GetDeployment" ], "Resource": [ "arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/g1/deployments/*" ] },
 { "Effect": "Allow", "Action": [ "greengrass:GetDeploymentArtifacts" ], "Resource": [ "arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/g1/deployments/*" ] },
 { "Effect": "Allow", "Action": [ "greengrass:UpdateCoreDeploymentStatus" ], "Resource": [ "arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/g1/deployments/*/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fgw" ] },
 { "Effect": "Allow", "Action": [ "greengrass:GetConnectivityInfo", "greengrass:UpdateConnectivityInfo" ], "Resource": [ "arn:aws:iot:us-east-1:123456789012:thing/gw" ] } ] }`

const discoveryOnly = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover",
 "Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"}}`

func mustParse(t *testing.T, name, doc string) *Document {
	t.Helper()
	d, err := Parse(name, []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMinimalPolicyAllowsTheCoresCalls(t *testing.T) {
	core := []*Document{mustParse(t, "minimal", minimal)}
	const arn = "arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/"
	tests := []struct {
		action, resource string
		allowed          bool
	}{
		{"greengrass:CreateCertificate", "arn:aws:iot:us-east-1:123456789012:thing/gw", true},
		{"greengrass:GetConnectivityInfo", "arn:aws:iot:us-east-1:123456789012:thing/gw", true},
		{"greengrass:UpdateConnectivityInfo", "arn:aws:iot:us-east-1:123456789012:thing/gw", true},
		{"greengrass:UpdateConnectivityInfo", "arn:aws:iot:us-east-1:123456789012:thing/other", false},
		{"greengrass:GetDeployment", arn + "g1/deployments/d-42", true},
		{"greengrass:GetDeployment", arn + "g2/deployments/d-42", false},
		{"greengrass:UpdateCoreDeploymentStatus", arn + "g1/deployments/d-42/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fgw", true},
		{"greengrass:UpdateCoreDeploymentStatus", arn + "g1/deployments/d-42/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fother", false},
		{"greengrass:Discover", "arn:aws:iot:us-east-1:123456789012:thing/gw", false},
		{"iot:UpdateThingShadow", "arn:aws:iot:us-east-1:123456789012:thing/gw-shadow", true},
		{"IOT:connect", "arn:aws:iot:us-east-1:123456789012:client/gw", true}, // actions ignore case
		{"iot:Publish", "arn:aws:iot:us-east-1:123456789012:topic/$aws/things/other-x", false},
	}
	for _, tt := range tests {
		d := Decide(core, Request{Action: tt.action, Resource: tt.resource, ThingName: "gw"})
		if d.Allowed != tt.allowed {
			t.Errorf("%s on %s: allowed=%v (%s), want %v", tt.action, tt.resource, d.Allowed, d.Reason, tt.allowed)
		}
		if !strings.Contains(d.Reason, tt.action) || !strings.Contains(d.Reason, tt.resource) {
			t.Errorf("reason %q does not name the action and resource", d.Reason)
		}
	}
}

func TestThingNameVariable(t *testing.T) {
	device := []*Document{mustParse(t, "discovery", discoveryOnly)}
	const things = "arn:aws:iot:us-east-1:123456789012:thing/"
	tests := []struct {
		thing, resource, action string
		allowed                 bool
	}{
		{"sensor", things + "sensor", "greengrass:Discover", true},
		{"sensor", things + "display", "greengrass:Discover", false}, // another thing's discovery
		{"sensor", things + "sensor", "greengrass:CreateCertificate", false},
		{"", things + "sensor", "greengrass:Discover", false},
		{"sens*", things + "sensor", "greengrass:Discover", false}, // a name never acts as a wildcard
	}
	for _, tt := range tests {
		if d := Decide(device, Request{Action: tt.action, Resource: tt.resource, ThingName: tt.thing}); d.Allowed != tt.allowed {
			t.Errorf("%s as %q on %s: allowed=%v (%s), want %v", tt.action, tt.thing, tt.resource, d.Allowed, d.Reason, tt.allowed)
		}
	}
}

func TestDenyWins(t *testing.T) {
	docs := []*Document{
		mustParse(t, "all", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"greengrass:*","Resource":"*"}]}`),
		mustParse(t, "no-certs", `{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"greengrass:CreateCertificate","Resource":"*"}]}`),
	}
	d := Decide(docs, Request{Action: "greengrass:CreateCertificate", Resource: "arn:aws:iot:us-east-1:1:thing/gw"})
	if d.Allowed || !strings.Contains(d.Reason, "no-certs") {
		t.Errorf("Deny did not win: %+v", d)
	}
	if d := Decide(docs, Request{Action: "greengrass:Discover", Resource: "x"}); !d.Allowed {
		t.Errorf("Allow lost without a Deny: %+v", d)
	}
	if d := Decide(nil, Request{Action: "greengrass:Discover", Resource: "x"}); d.Allowed || !strings.Contains(d.Reason, "no policy allows") {
		t.Errorf("no policy: %+v", d)
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true}, {"*", "anything", true}, {"a?c", "abc", true}, {"a?c", "ac", false},
		{"a*c", "abbbc", true}, {"a*c", "abbb", false}, {"*/deployments/*", "g/deployments/1", true},
		{"abc", "abcd", false}, {"a**b", "ab", true}, {"", "", true}, {"", "x", false},
	}
	for _, tt := range tests {
		if got := match(tt.pattern, tt.s); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestParseRefusals(t *testing.T) {
	tests := []struct{ doc, want string }{
		{`{"Version":"2008-10-17","Statement":[]}`, `Version: "2008-10-17"`},
		{`{"Version":"2012-10-17"}`, "Statement: missing"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Maybe","Action":"iot:Connect","Resource":"*"}]}`, `Statement[0].Effect: "Maybe"`},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}`, "Statement[0].Action: missing"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"Connect","Resource":"*"}]}`, "not service:Action"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect"}]}`, "Statement[0].Resource: missing"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{}}]}`, "Condition: not supported"},
		{`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"${iot:ClientId}"}]}`, "${iot:ClientId} is not supported"},
		{`{"Version":"2012-10-17","Statement":[1]}`, "Statement[0]: want an object"},
		{`{"Version":"2012-10-17","Statement":[],"Extra":1}`, "unknown field"},
	}
	for _, tt := range tests {
		_, err := Parse("p", []byte(tt.doc))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "policy p") {
			t.Errorf("Parse(%s) = %v, want an error naming the policy and %q", tt.doc, err, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(discoveryOnly))
	f.Add([]byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":["*"],"Resource":["a?b*"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		for _, st := range d.Statements {
			if st.Effect != Allow && st.Effect != Deny || len(st.Actions) == 0 || len(st.Resource) == 0 {
				t.Fatalf("Parse accepted an incomplete statement: %+v", st)
			}
		}
		Decide([]*Document{d}, Request{Action: "greengrass:Discover", Resource: "arn:aws:iot:r:1:thing/x", ThingName: "x"})
	})
}

func FuzzMatch(f *testing.F) {
	f.Add("a*b?c", "axxbyc")
	f.Add("*", "")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !strings.ContainsAny(pattern, "*?") && match(pattern, s) != (pattern == s) {
			t.Fatalf("match(%q, %q) without wildcards disagrees with ==", pattern, s)
		}
		if !match("*", s) || !match(s+"*", s) && !strings.ContainsAny(s, "*?") {
			t.Fatalf("match: * or prefix* does not match %q", s)
		}
	})
}
