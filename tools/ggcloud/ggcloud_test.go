package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/tools/ggcloud/admin"
)

// devicePolicy lets a device discover itself.
const devicePolicy = `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"greengrass:Discover",
 "Resource":"arn:aws:iot:us-east-1:000000000000:thing/${iot:Connection.Thing.ThingName}"}}`

// provision registers core gw and device sensor with the CLI, in group
// g1 with one subscription, and returns the device's identity.
func provision(t *testing.T, data string, p *pkiFiles) (core, device thing) {
	t.Helper()
	core, device = p.issue(t, "gw", time.Now().Add(time.Hour)), p.issue(t, "sensor", time.Now().Add(time.Hour))
	policy := write(t, p.dir, "device-policy.json", []byte(devicePolicy))
	for _, th := range []struct {
		name string
		id   thing
	}{{"gw", core}, {"sensor", device}} {
		if out := mustRun(t, "--data", data, "thing", "create", th.name); !strings.Contains(out, "created thing "+th.name) {
			t.Errorf("thing create: %q", out)
		}
		if out := mustRun(t, "--data", data, "cert", "register", "--thing", th.name, "--pem", th.id.certFile); strings.TrimSpace(out) != th.id.id {
			t.Errorf("cert register printed %q; want the certificate ID %s", out, th.id.id)
		}
	}
	mustRun(t, "--data", data, "policy", "create", "device", "--document", policy)
	mustRun(t, "--data", data, "policy", "attach", "device", "--cert", device.id)
	mustRun(t, "--data", data, "group", "create", "g1", "--core", "gw", "--ca-cert", p.groupCA, "--ca-key", p.groupKey)
	mustRun(t, "--data", data, "group", "add-device", "g1", "sensor")
	mustRun(t, "--data", data, "group", "add-subscription", "g1", "--id", "s1", "--source", "sensor", "--subject", "sensors/#", "--target", "cloud")
	mustRun(t, "--data", data, "connectivity", "set", "gw", "192.168.1.20:8883", "[fd00::1]:8883")
	return core, device
}

func TestAdminCommandsWithoutServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	core, device := provision(t, data, p)

	id := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1"))
	var g admin.Group
	if err := json.Unmarshal([]byte(mustRun(t, "--data", data, "group", "show", "g1")), &g); err != nil {
		t.Fatal(err)
	}
	if g.Id != "g1" || g.Core.CertificateId != core.id || len(g.Devices) != 1 || g.Devices[0].CertificateId != device.id ||
		g.CurrentDeploymentId != id || len(g.Subscriptions) != 1 || g.Subscriptions[0].Source != "arn:aws:iot:us-east-1:000000000000:thing/sensor" {
		t.Errorf("group show = %+v; want g1 with gw, sensor, s1 and deployment %s", g, id)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"thing", "list"}, "gw\tarn:aws:iot:us-east-1:000000000000:thing/gw\nsensor\tarn:aws:iot:us-east-1:000000000000:thing/sensor\n"},
		{[]string{"connectivity", "get", "gw"}, "192.168.1.20:8883\n[fd00::1]:8883\n"},
		{[]string{"deployment", "status", "g1", id}, "gw\tInProgress\t"},
		{[]string{"deployment", "list", "g1"}, id + "\tversion 1\t"},
		{[]string{"group", "list"}, "g1\tcore gw\t1 devices\t1 subscriptions\tdeployment " + id + "\n"},
		{[]string{"thing", "create", "gw"}, "thing gw exists"},
	}
	for _, tt := range tests {
		if out := mustRun(t, append([]string{"--data", data}, tt.args...)...); !strings.HasPrefix(out, tt.want) {
			t.Errorf("ggcloud %s = %q; want %q", strings.Join(tt.args, " "), out, tt.want)
		}
	}
	// GGCLOUD_DATA is the default data directory.
	t.Setenv("GGCLOUD_DATA", data)
	if out := mustRun(t, "thing", "list"); !strings.Contains(out, "sensor") {
		t.Errorf("thing list with GGCLOUD_DATA = %q", out)
	}
}

func TestErrors(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	provision(t, data, p)
	other := p.issue(t, "lamp", time.Now().Add(time.Hour))
	badPolicy := write(t, p.dir, "bad.json", []byte(`{"Version":"2012-10-17"}`))
	shortGroup := func(id, core string) []string {
		return []string{"group", "create", id, "--core", core, "--ca-cert", p.groupCA, "--ca-key", p.groupKey}
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage: ggcloud"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"unknown subcommand", []string{"thing", "delete", "gw"}, 2, `unknown command "thing delete"`},
		{"missing name", []string{"thing", "create"}, 2, "ggcloud: thing create: want NAME, got 0 argument(s)"},
		{"extra argument", []string{"group", "deploy", "g1", "g2"}, 2, "want ID, got 2"},
		{"unknown flag", []string{"thing", "list", "--colour"}, 2, "flag provided but not defined: -colour"},
		{"missing --pem", []string{"cert", "register", "--thing", "gw"}, 2, "--pem is required"},
		{"missing --core", []string{"group", "create", "g2", "--ca-cert", p.groupCA, "--ca-key", p.groupKey}, 2, "--core is required"},
		{"serve without a key", []string{"serve", "--cert", p.serverCert}, 2, "--cert and --key are required"},
		{"bad endpoint", []string{"connectivity", "set", "gw", "nohost"}, 2, `"nohost": want HOST:PORT`},
		{"unreadable file", []string{"cert", "register", "--thing", "gw", "--pem", "/nonexistent.pem"}, 1, "ggcloud: cert register: --pem: open /nonexistent.pem"},
		{"unknown thing", []string{"cert", "register", "--thing", "nobody", "--pem", other.certFile}, 1, "thing nobody: not found"},
		{"bad policy", []string{"policy", "create", "p", "--document", badPolicy}, 1, "Statement: missing"},
		{"attach to an unknown certificate", []string{"policy", "attach", "device", "--cert", other.id}, 1, "certificate " + other.id + ": not found"},
		{"group of an unknown core", shortGroup("g2", "nobody"), 1, "thing nobody: not found"},
		{"core of two groups", shortGroup("g2", "gw"), 1, "already the core of group g1"},
		{"stranger as a device", []string{"group", "add-device", "g1", "lamp"}, 1, "thing lamp: not found"},
		{"subscription from a stranger", []string{"group", "add-subscription", "g1", "--id", "s2", "--source", "lamp", "--subject", "x", "--target", "cloud"}, 1, `Source "lamp"`},
		{"deploy an unknown group", []string{"group", "deploy", "g9"}, 1, "group g9: not found"},
		{"status of an unknown deployment", []string{"deployment", "status", "g1", "nope"}, 1, "deployment nope: not found"},
		{"short expiry", []string{"group", "create", "g2", "--core", "gw", "--ca-cert", p.groupCA, "--ca-key", p.groupKey, "--certificate-expiry-ms", "-5"}, 2, "--certificate-expiry-ms -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := ggcloud(append([]string{"--data", data}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, stderr, tt.code, tt.want)
			}
			if code == 1 && (strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "ggcloud: ")) {
				t.Errorf("stderr %q; want one line starting ggcloud:", stderr)
			}
		})
	}
	// Refusals changed nothing.
	if out := mustRun(t, "--data", data, "group", "list"); !strings.HasPrefix(out, "g1\tcore gw\t1 devices\t1 subscriptions\tdeployment none\n") || strings.Count(out, "\n") != 1 {
		t.Errorf("groups after refusals: %q", out)
	}
}

func TestServe(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	_, device := provision(t, data, p)
	deployment := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1"))
	s := serve(t, data, p)
	url := "https://" + s.addr

	// The admin commands reach the running server through its socket:
	// the store is locked by the server.
	c, err := admin.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	served := c.Served()
	c.Close()
	if !served {
		t.Fatal("admin.Open did not find the running server")
	}
	mustRun(t, "--data", data, "thing", "create", "lamp")
	if out := mustRun(t, "--data", data, "deployment", "status", "g1", deployment); !strings.HasPrefix(out, "gw\tInProgress") {
		t.Errorf("deployment status through the socket = %q", out)
	}
	if info, err := os.Stat(admin.SocketPath(data)); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("admin socket: %v, %v; want mode 0600", info, err)
	}

	// Discovery over mutual TLS.
	resp, err := p.client(device, nil).Get(url + "/greengrass/discover/thing/sensor")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"GGGroupId":"g1"`) || !strings.Contains(string(body), "192.168.1.20") {
		t.Errorf("discovery = %d %s", resp.StatusCode, body)
	}

	// Handshakes ggcloud refuses.
	expired := p.issue(t, "sensor", time.Now().Add(-time.Minute))
	mustRun(t, "--data", data, "cert", "register", "--thing", "sensor", "--pem", expired.certFile)
	mustRun(t, "--data", data, "policy", "attach", "device", "--cert", expired.id)
	refusals := []struct {
		name string
		th   thing
		cfg  func(*tls.Config)
	}{
		{"expired client certificate", expired, nil},
		{"TLS 1.1", device, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS11 }},
		{"TLS 1.2 with CBC", device, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
		}},
		{"TLS 1.2 without ECDHE", device, func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
		}},
		{"no client certificate", thing{}, func(c *tls.Config) { c.Certificates = nil }},
	}
	for _, r := range refusals {
		resp, err := p.client(r.th, r.cfg).Get(url + "/greengrass/discover/thing/sensor")
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: %d; want the handshake refused", r.name, resp.StatusCode)
		}
	}
	// TLS 1.2 with ECDHE and AES-GCM is served.
	resp, err = p.client(device, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }).Get(url + "/greengrass/discover/thing/sensor")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("TLS 1.2 discovery: %v", err)
	} else {
		resp.Body.Close()
	}

	if code := s.shutdown(t); code != 0 {
		t.Errorf("serve exit %d after the stop signal; want 0:\n%s", code, s.stderr)
	}
	if _, err := os.Stat(admin.SocketPath(data)); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
	// Without a server, the same command opens the store itself.
	if out := mustRun(t, "--data", data, "thing", "list"); !strings.Contains(out, "lamp\t") {
		t.Errorf("thing list after serve stopped = %q; want lamp, created through the server", out)
	}
}

func TestServeKeepsItsIdentity(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	s := serve(t, data, p, "--region", "eu-west-1", "--account", "123456789012")
	if !strings.Contains(s.stderr.String(), "region=eu-west-1 account=123456789012") {
		t.Errorf("ready line does not name the identity:\n%s", s.stderr)
	}
	s.shutdown(t)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"another region", []string{"--region", "us-east-1"}, 1, "renders ARNs for region eu-west-1, account 123456789012"},
		{"another account", []string{"--account", "000000000000"}, 1, "refusing region eu-west-1, account 000000000000"},
		{"bad duration", []string{"--test-min-validity", "-1s"}, 2, "--test-min-validity -1s"},
		{"key of another certificate", []string{"--key", p.groupKey}, 1, "--key is not the key of --cert"},
	}
	for _, tt := range tests {
		args := append([]string{"--data", data, "serve", "--listen", "127.0.0.1:0", "--cert", p.serverCert, "--key", p.server}, tt.args...)
		code, _, stderr := ggcloud(args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%s: exit %d %q; want %d naming %q", tt.name, code, stderr, tt.code, tt.want)
		}
	}
	// With no flags it keeps what is stored, and renders it.
	s = serve(t, data, p, "--test-min-validity", "2s")
	if log := s.stderr.String(); !strings.Contains(log, "region=eu-west-1") || !strings.Contains(log, "level=WARN") || !strings.Contains(log, "for tests only") {
		t.Errorf("serve log:\n%s", log)
	}
	mustRun(t, "--data", data, "thing", "create", "gw")
	if out := mustRun(t, "--data", data, "thing", "list"); out != "gw\tarn:aws:iot:eu-west-1:123456789012:thing/gw\n" {
		t.Errorf("thing list = %q; want the stored region and account in the ARN", out)
	}
}

// TestDeploymentOverHTTPS: a core with the minimal policy reads its
// deployment and reports its status through serve; the CLI shows it.
func TestDeploymentOverHTTPS(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	core, _ := provision(t, data, p)
	doc := strings.NewReplacer("{core}", "gw", "{group}", "g1").Replace(`{"Version":"2012-10-17","Statement":[
	 {"Effect":"Allow","Action":["greengrass:GetDeployment"],"Resource":["arn:aws:greengrass:us-east-1:000000000000:/greengrass/groups/{group}/deployments/*"]},
	 {"Effect":"Allow","Action":["greengrass:UpdateCoreDeploymentStatus"],"Resource":["arn:aws:greengrass:us-east-1:000000000000:/greengrass/groups/{group}/deployments/*/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A000000000000%3Athing%2F{core}"]}]}`)
	mustRun(t, "--data", data, "policy", "create", "core", "--document", write(t, p.dir, "core.json", []byte(doc)))
	mustRun(t, "--data", data, "policy", "attach", "core", "--cert", core.id)
	s := serve(t, data, p)
	id := strings.TrimSpace(mustRun(t, "--data", data, "group", "deploy", "g1"))
	c := p.client(core, nil)
	url := "https://" + s.addr

	resp, err := c.Get(url + "/greengrass/things/gw/deployment")
	if err != nil {
		t.Fatal(err)
	}
	var cur struct{ GroupId, DeploymentId string }
	json.NewDecoder(resp.Body).Decode(&cur)
	resp.Body.Close()
	if cur.GroupId != "g1" || cur.DeploymentId != id {
		t.Fatalf("current deployment = %+v; want g1 %s", cur, id)
	}
	resp, err = c.Get(url + "/greengrass/groups/g1/deployments/" + id)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := config.ParseGroup(body); err != nil {
		t.Errorf("GetDeployment returned an invalid group.json: %v\n%s", err, body)
	}
	req := url + "/greengrass/groups/g1/deployments/" + id + "/cores/arn%3Aaws%3Aiot%3Aus-east-1%3A000000000000%3Athing%2Fgw"
	resp, err = c.Post(req, "application/json", strings.NewReader(`{"Status":"Failure","ErrorMessage":"no space left"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("UpdateCoreDeploymentStatus = %d", resp.StatusCode)
	}
	if out := mustRun(t, "--data", data, "deployment", "status", "g1", id); !strings.HasPrefix(out, "gw\tFailure\t") || !strings.HasSuffix(out, "\tno space left\n") {
		t.Errorf("deployment status = %q", out)
	}
}

// TestBinaryStopsOnSIGTERM builds ggcloud, serves, and stops it with
// SIGTERM: exit status 0 and no socket left.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "ggcloud")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	p := newPKI(t)
	log := &testtool.Buffer{}
	cmd := exec.Command(bin, "--data", data, "serve", "--listen", "127.0.0.1:0", "--cert", p.serverCert, "--key", p.server)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if !testtool.Poll(testtool.Timeout, func() bool { return readyLine.MatchString(log.String()) }) {
		cmd.Process.Kill()
		t.Fatalf("not ready within %v:\n%s", testtool.Timeout, log)
	}
	if out, err := exec.Command(bin, "--data", data, "thing", "create", "gw").CombinedOutput(); err != nil {
		t.Errorf("thing create while serving: %v %s", err, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, log)
		}
	case <-time.After(testtool.Timeout):
		cmd.Process.Kill()
		t.Fatalf("no exit within %v of SIGTERM:\n%s", testtool.Timeout, log)
	}
	if _, err := os.Stat(admin.SocketPath(data)); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind: %v", err)
	}
	if !strings.Contains(log.String(), "ggcloud stopped") {
		t.Errorf("log:\n%s", log)
	}
}
