package api

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

func gwARN(thing string) string { return "arn:aws:iot:us-east-1:123456789012:thing/" + thing }

func deploymentARN(group, id string) string {
	return "arn:aws:greengrass:us-east-1:123456789012:/greengrass/groups/" + group + "/deployments/" + id
}

// deploy deploys both groups of the fixture and returns their deployment IDs.
func (f *fixture) deploy(t *testing.T) (string, string) {
	t.Helper()
	var ids []string
	for _, g := range []string{"group-1", "group-2"} {
		id, err := f.st.Deploy(g)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids[0], ids[1]
}

func csrBody(t *testing.T) string {
	t.Helper()
	key, _ := keyspec.RSA2048.Generate()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "gw"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"Csr": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
	return string(body)
}

// TestMinimalPolicy: v1's minimal core policy, filled in for core gw and
// group-1, allows exactly the core's own calls.
func TestMinimalPolicy(t *testing.T) {
	f := newFixture(t)
	// Before any deployment there is nothing to fetch.
	if code, body := call(t, f.core, "GET", f.url+"/greengrass/things/gw/deployment", ""); code != 404 || !strings.Contains(body, "no deployment for core gw") {
		t.Errorf("current deployment before any = %d %s; want 404 naming the core", code, body)
	}
	d1, d2 := f.deploy(t)
	status := func(group, id, core string) string {
		return f.url + "/greengrass/groups/" + group + "/deployments/" + id + "/cores/" + url.QueryEscape(gwARN(core))
	}
	conn := f.url + "/greengrass/things/gw/connectivityInfo"
	tests := []struct {
		name        string
		client      *http.Client
		method, url string
		body        string
		code        int
		want        string
	}{
		{"discovery", f.core, "GET", f.url + "/greengrass/discover/thing/gw", "", 403, "greengrass:Discover on " + gwARN("gw")},
		{"get connectivity", f.core, "GET", conn, "", 200, "ConnectivityInfo"},
		{"put connectivity", f.core, "PUT", conn, `{"ConnectivityInfo":[{"Id":"lan","HostAddress":"127.0.0.1","PortNumber":8883}]}`, 200, "127.0.0.1"},
		{"create certificate", f.core, "POST", f.url + "/greengrass/things/gw/certificate", csrBody(t), 200, "CertificatePem"},
		{"current deployment", f.core, "GET", f.url + "/greengrass/things/gw/deployment", "", 200, `"DeploymentId":"` + d1 + `"`},
		{"get deployment", f.core, "GET", f.url + "/greengrass/groups/group-1/deployments/" + d1, "", 200, `"GroupId": "group-1"`},
		{"report status", f.core, "POST", status("group-1", d1, "gw"), `{"Status":"InProgress"}`, 200, `"Status":"InProgress"`},
		{"report status, slash not encoded", f.core, "POST",
			f.url + "/greengrass/groups/group-1/deployments/" + d1 + "/cores/" + gwARN("gw"), `{"Status":"Success"}`, 200, `"Status":"Success"`},
		{"unknown deployment of its group", f.core, "GET", f.url + "/greengrass/groups/group-1/deployments/nope", "", 404, "deployment nope"},
		{"another group's deployment", f.core, "GET", f.url + "/greengrass/groups/group-2/deployments/" + d2, "", 403,
			"greengrass:GetDeployment on " + deploymentARN("group-2", d2)},
		{"another group's status", f.core, "POST", status("group-2", d2, "gw2"), `{"Status":"Success"}`, 403,
			"greengrass:UpdateCoreDeploymentStatus on " + deploymentARN("group-2", d2) + "/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fgw2"},
		{"another core's status in its group", f.core, "POST", status("group-1", d1, "gw2"), `{"Status":"Success"}`, 403, "UpdateCoreDeploymentStatus"},
		{"another core's current deployment", f.core, "GET", f.url + "/greengrass/things/gw2/deployment", "", 403, "thing gw may not read the deployment of core gw2"},
		{"another thing's connectivity", f.core, "GET", f.url + "/greengrass/things/sensor/connectivityInfo", "", 403, "greengrass:GetConnectivityInfo on " + gwARN("sensor")},
		{"unknown status", f.core, "POST", status("group-1", d1, "gw"), `{"Status":"Done"}`, 400, "want one of InProgress, Success, Failure"},
		{"bad status body", f.core, "POST", status("group-1", d1, "gw"), `{"State":"Success"}`, 400, "unknown field"},
		{"the other core reads its own", f.core2, "GET", f.url + "/greengrass/groups/group-2/deployments/" + d2, "", 200, `"GroupId": "group-2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.client, tt.method, tt.url, tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("%s %s = %d %s; want %d with %q", tt.method, tt.url, code, body, tt.code, tt.want)
			}
		})
	}
	// The reported statuses are stored; refused reports left no trace.
	st, err := f.st.DeploymentStatus("group-1", d1)
	if err != nil || len(st) != 1 || st[0].Status != store.StatusSuccess {
		t.Errorf("group-1 status = %+v, %v; want Success", st, err)
	}
	if st, _ := f.st.DeploymentStatus("group-2", d2); len(st) != 1 || st[0].Status != store.StatusInProgress {
		t.Errorf("group-2 status = %+v; want InProgress (nobody may report it but gw2)", st)
	}
}

// TestGetDeploymentDocument: the document served is the stored group.json,
// a valid one, as JSON.
func TestGetDeploymentDocument(t *testing.T) {
	f := newFixture(t)
	d1, _ := f.deploy(t)
	resp, err := f.core.Get(f.url + "/greengrass/groups/group-1/deployments/" + d1)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	stored, err := f.st.Deployment("group-1", d1)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(raw)) != strings.TrimSpace(string(stored.Document)) {
		t.Errorf("served %s; stored %s", raw, stored.Document)
	}
	g, err := config.ParseGroup(raw)
	if err != nil {
		t.Fatalf("served group.json is invalid: %v", err)
	}
	if g.Core().ThingArn != gwARN("gw") || len(g.Devices) != 1 || g.Devices[0].ThingArn != gwARN("sensor") {
		t.Errorf("group.json %s does not describe group-1", raw)
	}
}

// TestStatusWithEncodedARN sends the percent-encoded core ARN byte for
// byte, as the core writes it, and reads the report back.
func TestStatusWithEncodedARN(t *testing.T) {
	f := newFixture(t)
	d1, _ := f.deploy(t)
	path := "/greengrass/groups/group-1/deployments/" + d1 + "/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fgw"
	req, err := http.NewRequest("POST", f.url+path, strings.NewReader(`{"Status":"Failure","ErrorMessage":"group.json: Subscriptions[0]: bad"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := req.URL.EscapedPath(); got != path {
		t.Fatalf("request path %s; want it sent as %s", got, path)
	}
	resp, err := f.core.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var echo store.CoreStatus
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d, %v", resp.StatusCode, err)
	}
	if echo.Status != "Failure" || echo.ErrorMessage != "group.json: Subscriptions[0]: bad" || time.Since(echo.UpdatedAt) > time.Minute {
		t.Errorf("echo %+v", echo)
	}
	st, err := f.st.DeploymentStatus("group-1", d1)
	if err != nil || len(st) != 1 || st[0] != echo {
		t.Errorf("stored %+v, %v; want the echo %+v", st, err, echo)
	}
}

// TestDevicePolicyOnlyDiscovers: a device whose policy only discovers is
// refused everything else, with the action and resource named.
func TestDevicePolicyOnlyDiscovers(t *testing.T) {
	f := newFixture(t)
	d1, _ := f.deploy(t)
	if code, body := call(t, f.device, "GET", f.url+"/greengrass/discover/thing/sensor", ""); code != 200 || !strings.Contains(body, "group-1") {
		t.Fatalf("discovery = %d %s", code, body)
	}
	statusURL := f.url + "/greengrass/groups/group-1/deployments/" + d1 + "/cores/" + url.QueryEscape(gwARN("gw"))
	tests := []struct {
		name, method, url, body, want string
	}{
		{"connectivity", "GET", f.url + "/greengrass/things/sensor/connectivityInfo", "", "greengrass:GetConnectivityInfo on " + gwARN("sensor")},
		{"put connectivity", "PUT", f.url + "/greengrass/things/sensor/connectivityInfo", `{"ConnectivityInfo":[]}`, "greengrass:UpdateConnectivityInfo on " + gwARN("sensor")},
		{"certificate", "POST", f.url + "/greengrass/things/sensor/certificate", csrBody(t), "greengrass:CreateCertificate on " + gwARN("sensor")},
		{"the core's deployment", "GET", f.url + "/greengrass/things/gw/deployment", "", "greengrass:GetDeployment of core gw: thing sensor may not read"},
		{"get deployment", "GET", f.url + "/greengrass/groups/group-1/deployments/" + d1, "", "greengrass:GetDeployment on " + deploymentARN("group-1", d1)},
		{"report status", "POST", statusURL, `{"Status":"Success"}`, "greengrass:UpdateCoreDeploymentStatus on " + deploymentARN("group-1", d1) + "/cores/"},
		{"discover another", "GET", f.url + "/greengrass/discover/thing/gw", "", "greengrass:Discover on " + gwARN("gw")},
	}
	for _, tt := range tests {
		if code, body := call(t, f.device, tt.method, tt.url, tt.body); code != 403 || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s; want 403 naming %q", tt.name, code, body, tt.want)
		}
	}
	if code, body := call(t, f.stray, "GET", f.url+"/greengrass/groups/group-1/deployments/"+d1, ""); code != 403 || !strings.Contains(body, "not registered") {
		t.Errorf("unregistered certificate = %d %s; want 403", code, body)
	}
}

// TestExpiredCertificate: a registered certificate past its NotAfter is
// refused even where its policy allows the call.
func TestExpiredCertificate(t *testing.T) {
	f := newFixture(t)
	expired := f.registered("sensor", devicePolicy, time.Now().Add(-time.Minute))
	if code, body := call(t, expired, "GET", f.url+"/greengrass/discover/thing/sensor", ""); code != 403 || !strings.Contains(body, "is valid from") {
		t.Errorf("expired certificate = %d %s; want 403 naming its validity", code, body)
	}
}

// TestOnlyTheCoreReports: a thing whose policy allows everything still
// may not ask for, or report on, another core's deployment.
func TestOnlyTheCoreReports(t *testing.T) {
	f := newFixture(t)
	d1, _ := f.deploy(t)
	spy := f.registered("spy", `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, time.Now().Add(time.Hour))
	status := f.url + "/greengrass/groups/group-1/deployments/" + d1 + "/cores/" + url.QueryEscape(gwARN("gw"))
	if code, body := call(t, spy, "POST", status, `{"Status":"Success"}`); code != 403 || !strings.Contains(body, "only the core itself") {
		t.Errorf("spy reporting for gw = %d %s; want 403", code, body)
	}
	if code, body := call(t, spy, "GET", f.url+"/greengrass/things/gw/deployment", ""); code != 403 || !strings.Contains(body, "only the core itself") {
		t.Errorf("spy asking for gw's deployment = %d %s; want 403", code, body)
	}
	if st, _ := f.st.DeploymentStatus("group-1", d1); len(st) != 1 || st[0].Status != store.StatusInProgress {
		t.Errorf("status after the spy's report = %+v; want InProgress", st)
	}
}
