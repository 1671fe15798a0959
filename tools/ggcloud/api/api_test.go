package api

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/keys"
	"github.com/ggcore/ggcore/core/pki"
	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/tools/ggcloud/store"
)

// devicePolicy only discovers.
const devicePolicy = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover",
 "Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"}}`

const (
	region  = "us-east-1"
	account = "123456789012"
)

// minimalPolicy is Greengrass v1's "Minimal AWS IoT Policy" (testdata, copied
// verbatim) filled in for a core and its group.
func minimalPolicy(t *testing.T, core, group string) string {
	t.Helper()
	data, err := os.ReadFile("testdata/minimal-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("region", region, "account-id", account, "core-name", core, "group-id", group).Replace(string(data))
}

// fixture is an API over mutual TLS with a registered core gw of group-1
// and its device sensor, a core gw2 of group-2 and its device lamp, and
// an unregistered certificate. The cores have v1's minimal core policy,
// the devices a discovery-only policy.
type fixture struct {
	url                              string
	st                               *store.Store
	core, core2, device, stray, lamp *http.Client
	groupCA                          *x509.Certificate
	ca                               *pki.CA
	registered                       func(thing, pol string, notAfter time.Time) *http.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ca, err := pki.NewCA("ggcloud test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.UseIdentity(store.Identity{Region: region, Account: account}); err != nil {
		t.Fatal(err)
	}
	// client makes a certificate for thing; with a policy, it registers
	// the thing and certificate and attaches the policy.
	client := func(thing, pol string, notAfter time.Time) *http.Client {
		key, err := keyspec.ECP256.Generate()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Issue(key.Public(), pki.Leaf{CommonName: thing, Usage: pki.ClientAuth,
			NotBefore: notAfter.Add(-2 * time.Hour), NotAfter: notAfter})
		if err != nil {
			t.Fatal(err)
		}
		if pol != "" {
			id := pki.CertificateID(cert.Raw)
			if _, err := st.Thing(thing); err != nil {
				if err := st.CreateThing(store.Thing{Name: thing, ARN: "arn:aws:iot:us-east-1:123456789012:thing/" + thing}); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.RegisterCertificate(store.Certificate{ID: id, Thing: thing}); err != nil {
				t.Fatal(err)
			}
			if err := st.PutPolicy(thing+"-policy", []byte(pol)); err != nil {
				t.Fatal(err)
			}
			if err := st.AttachPolicy(thing+"-policy", id); err != nil {
				t.Fatal(err)
			}
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca.Cert)
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key}},
		}}}
	}
	hour := time.Now().Add(time.Hour)
	f := &fixture{st: st, ca: ca, registered: client}
	f.core, f.device, f.stray = client("gw", minimalPolicy(t, "gw", "group-1"), hour), client("sensor", devicePolicy, hour), client("stray", "", hour)
	f.core2 = client("gw2", minimalPolicy(t, "gw2", "group-2"), hour)
	f.lamp = client("lamp", devicePolicy, hour) // a device of another group
	groupCA, err := pki.NewCA("group-1 CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	f.groupCA = groupCA.Cert
	caKey, err := keys.MarshalPEM(groupCA.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := string(pki.EncodeCertificate(groupCA.Cert))
	for _, g := range []store.Group{
		{ID: "group-1", Core: "gw", Devices: []string{"sensor"}, CAs: []string{caPEM}, CAKey: string(caKey), CertificateExpiryMs: 7 * 24 * 3600 * 1000},
		{ID: "group-2", Core: "gw2", Devices: []string{"lamp"}, CAs: []string{string(pki.EncodeCertificate(ca.Cert))}},
	} {
		if err := st.PutGroup(g); err != nil {
			t.Fatal(err)
		}
	}

	srvKey, _ := keyspec.ECP256.Generate()
	srvCert, err := ca.Issue(srvKey.Public(), pki.Leaf{CommonName: "ggcloud", IPs: []net.IP{net.IPv4(127, 0, 0, 1)},
		Usage: pki.ServerAuth, NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer((&Server{Store: st, Region: region, Account: account}).Handler())
	// As ggcloud serve: any client certificate; registration decides.
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func call(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewBufferString(body))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestConnectivityInfo(t *testing.T) {
	f := newFixture(t)
	path := f.url + "/greengrass/things/gw/connectivityInfo"
	put := `{"ConnectivityInfo":[{"Id":"lan","HostAddress":"192.168.1.20","PortNumber":8883,"Metadata":""}]}`
	tests := []struct {
		name        string
		client      *http.Client
		method, url string
		body        string
		code        int
		want        string
	}{
		{"core reads its empty info", f.core, "GET", path, "", 200, `"ConnectivityInfo":[]`},
		{"core updates its info", f.core, "PUT", path, put, 200, "192.168.1.20"},
		{"core reads it back", f.core, "GET", path, "", 200, `"HostAddress":"192.168.1.20"`},
		{"core may not touch another thing", f.core, "PUT", f.url + "/greengrass/things/sensor/connectivityInfo", put, 403,
			"greengrass:UpdateConnectivityInfo on arn:aws:iot:us-east-1:123456789012:thing/sensor"},
		{"device with a discovery-only policy", f.device, "GET", path, "", 403, "no policy allows greengrass:GetConnectivityInfo"},
		{"unregistered certificate", f.stray, "GET", path, "", 403, "is not registered"},
		{"bad body", f.core, "PUT", path, `{"Connectivity":[]}`, 400, "unknown field"},
		{"bad port", f.core, "PUT", path, `{"ConnectivityInfo":[{"HostAddress":"h","PortNumber":0}]}`, 400, "PortNumber"},
		{"no such call", f.core, "DELETE", path, "", 404, "no such call: DELETE /greengrass/things/gw/connectivityInfo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, tt.client, tt.method, tt.url, tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Errorf("%s %s = %d %s; want %d with %q", tt.method, tt.url, code, body, tt.code, tt.want)
			}
			if code != 200 {
				var e struct{ Message string }
				if json.Unmarshal([]byte(body), &e) != nil || e.Message == "" {
					t.Errorf("error body %q is not {\"message\":...}", body)
				}
			}
		})
	}
	// A refused update changed nothing.
	if _, body := call(t, f.core, "GET", path, ""); !strings.Contains(body, "192.168.1.20") {
		t.Errorf("after refused updates: %s", body)
	}
}

func TestDiscovery(t *testing.T) {
	f := newFixture(t)
	put := `{"ConnectivityInfo":[{"Id":"lan","HostAddress":"192.168.1.20","PortNumber":8883,"Metadata":""}]}`
	if code, body := call(t, f.core, "PUT", f.url+"/greengrass/things/gw/connectivityInfo", put); code != 200 {
		t.Fatalf("update connectivity: %d %s", code, body)
	}
	code, body := call(t, f.device, "GET", f.url+"/greengrass/discover/thing/sensor", "")
	if code != 200 {
		t.Fatalf("discover: %d %s", code, body)
	}
	var resp struct {
		GGGroups []struct {
			GGGroupId string
			Cores     []struct {
				ThingArn     string `json:"thingArn"`
				Connectivity []struct {
					HostAddress string
					PortNumber  int
				}
			}
			CAs []string
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(resp.GGGroups) != 1 || resp.GGGroups[0].GGGroupId != "group-1" || len(resp.GGGroups[0].Cores) != 1 ||
		resp.GGGroups[0].Cores[0].ThingArn != "arn:aws:iot:us-east-1:123456789012:thing/gw" ||
		len(resp.GGGroups[0].Cores[0].Connectivity) != 1 || resp.GGGroups[0].Cores[0].Connectivity[0].HostAddress != "192.168.1.20" ||
		len(resp.GGGroups[0].CAs) != 1 || !strings.Contains(resp.GGGroups[0].CAs[0], "BEGIN CERTIFICATE") {
		t.Errorf("discovery response %s does not describe group-1 and its core", body)
	}
	if !strings.Contains(body, `"thingArn"`) || !strings.Contains(body, `"GGGroups"`) {
		t.Errorf("discovery response %s lacks v1's key spelling", body)
	}
	// A device may discover only itself: not another group's device.
	if code, body := call(t, f.lamp, "GET", f.url+"/greengrass/discover/thing/sensor", ""); code != 403 || !strings.Contains(body, "greengrass:Discover") {
		t.Errorf("lamp discovering sensor = %d %s; want 403 naming greengrass:Discover", code, body)
	}
	if code, body := call(t, f.lamp, "GET", f.url+"/greengrass/discover/thing/lamp", ""); code != 200 || !strings.Contains(body, "group-2") || strings.Contains(body, "group-1") {
		t.Errorf("lamp discovering itself = %d %s; want group-2 only", code, body)
	}
	// The core's policy has no greengrass:Discover.
	if code, _ := call(t, f.core, "GET", f.url+"/greengrass/discover/thing/gw", ""); code != 403 {
		t.Errorf("core discovering = %d; want 403", code)
	}
}

func TestCreateCertificate(t *testing.T) {
	f := newFixture(t)
	put := `{"ConnectivityInfo":[{"Id":"lan","HostAddress":"192.168.1.20","PortNumber":8883,"Metadata":""}]}`
	if code, body := call(t, f.core, "PUT", f.url+"/greengrass/things/gw/connectivityInfo", put); code != 200 {
		t.Fatalf("update connectivity: %d %s", code, body)
	}
	key, _ := keyspec.RSA2048.Generate()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "gw"}, DNSNames: []string{"localhost"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	body, _ := json.Marshal(map[string]string{"Csr": csr})
	url := f.url + "/greengrass/things/gw/certificate"
	code, resp := call(t, f.core, "POST", url, string(body))
	if code != 200 {
		t.Fatalf("CreateCertificate = %d %s", code, resp)
	}
	var out struct{ CertificatePem, GroupCA, ExpiresAt string }
	if err := json.Unmarshal([]byte(resp), &out); err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates([]byte(out.CertificatePem))
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	roots := x509.NewCertPool()
	roots.AddCert(f.groupCA)
	for _, name := range []string{"localhost", "192.168.1.20"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("the certificate does not serve %s under the group CA: %v", name, err)
		}
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("signature %v, want SHA256-RSA as v1", c.SignatureAlgorithm)
	}
	if d := time.Until(c.NotAfter); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
		t.Errorf("valid for %v, want the group's 7 days", d)
	}
	if !strings.Contains(out.GroupCA, "BEGIN CERTIFICATE") || out.ExpiresAt == "" {
		t.Errorf("response lacks GroupCA or ExpiresAt: %s", resp)
	}

	tampered := strings.Replace(csr, csr[100:104], "AAAA", 1)
	bad, _ := json.Marshal(map[string]string{"Csr": tampered})
	tests := []struct {
		name   string
		client *http.Client
		url    string
		body   string
		code   int
		want   string
	}{
		{"a device may not", f.device, url, string(body), 403, "greengrass:CreateCertificate"},
		{"not a CSR", f.core, url, `{"Csr":"hello"}`, 400, "CERTIFICATE REQUEST"},
		{"tampered CSR", f.core, url, string(bad), 400, ""},
	}
	for _, tt := range tests {
		if code, resp := call(t, tt.client, "POST", tt.url, tt.body); code != tt.code || !strings.Contains(resp, tt.want) {
			t.Errorf("%s: %d %s; want %d with %q", tt.name, code, resp, tt.code, tt.want)
		}
	}
}
