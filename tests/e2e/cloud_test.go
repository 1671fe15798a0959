package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// cloudProc is a running ggcloud (the control plane) on a loopback port.
type cloudProc struct {
	*testtool.Process
	data string // its --data directory
	port int
	// mqttPort is its MQTT broker's (AWS IoT Core's stand-in) port.
	mqttPort int
	log      *testtool.Buffer // its output (Process.Output)
}

// cloudOptions say how a fleet is put into ggcloud.
type cloudOptions struct {
	// expiryMs is the group's CertificateExpiryInMilliseconds; 0 keeps
	// the bundle's (7 days).
	expiryMs int
	// dcm drops the bundle's MQTT server key so that the core's device
	// certificate manager gets its certificate from ggcloud.
	dcm bool
	// iot makes ggcloud's MQTT broker the core's upstream (iotHost).
	iot bool
}

// withCloud issues ggcloud's server certificate from the bundle's root CA,
// starts ggcloud, registers the bundle with `ggprov register` and points
// the core's config at it.
func withCloud(t *testing.T, f *fleet, o cloudOptions) *cloudProc {
	t.Helper()
	runOK(t, bin.ggprov, "ggcloud-cert", "--dir", f.dir)
	data := filepath.Join(t.TempDir(), "ggcloud")
	var c *cloudProc
	for attempt := 1; c == nil; attempt++ {
		// A port free a moment ago may have been taken since by another
		// test's listener: then ggcloud tries two other ones.
		c = launchCloud(t, data, f, freePort(t), freePort(t), attempt < 3)
	}
	args := []string{"register", "--dir", f.dir, "--ggcloud-data", c.data, "--ggcloud", c.addr()}
	if o.expiryMs != 0 {
		args = append(args, "--certificate-expiry-ms", strconv.Itoa(o.expiryMs))
	}
	if o.iot {
		args = append(args, "--iot", c.mqttAddr())
	}
	runOK(t, bin.ggprov, args...)
	if o.dcm {
		cfg := readJSON(t, f.configPath())
		delete(cfg["crypto"].(map[string]any)["principals"].(map[string]any), "MQTTServerCertificate")
		writeJSON(t, f.configPath(), cfg)
	}
	return c
}

func (c *cloudProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) }
func (c *cloudProc) mqttAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.mqttPort))
}

// startCloud runs `ggcloud serve` for fleet f's ggcloud certificate and
// waits for `ggcloud ready`, with its MQTT broker on mqttPort; it is
// stopped at cleanup. Certificate
// validity may be as short as 2 s (--test-min-validity).
func startCloud(t *testing.T, data string, f *fleet, port, mqttPort int) *cloudProc {
	t.Helper()
	return launchCloud(t, data, f, port, mqttPort, false)
}

// launchCloud is startCloud; when portsMovable, a ggcloud that could not
// listen because a port is taken is not a failure: it returns nil, for
// the caller to try other ports.
func launchCloud(t *testing.T, data string, f *fleet, port, mqttPort int, portsMovable bool) *cloudProc {
	t.Helper()
	c := &cloudProc{data: data, port: port, mqttPort: mqttPort}
	c.Process = testtool.StartProcess(t, exec.Command(bin.ggcloud, "--data", data, "serve", "--listen", c.addr(), "--mqtt-listen", c.mqttAddr(),
		"--cert", filepath.Join(f.dir, "ggcloud", "server.cert.pem"), "--key", filepath.Join(f.dir, "ggcloud", "server.key.pem"),
		"--test-min-validity", "2s"))
	c.log = c.Output
	if !c.WaitFor("ggcloud ready", 0) {
		c.Kill()
		if portsMovable && strings.Contains(c.log.String(), "address already in use") {
			t.Logf("port %d or %d taken; ggcloud tries other ports", port, mqttPort)
			return nil
		}
		t.Fatalf("ggcloud not ready within %v (%v); its log:\n%s", testtool.Timeout, c.Err(), c.log)
	}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops ggcloud with SIGTERM and expects a clean exit; a ggcloud
// that had already exited is left as it is.
func (c *cloudProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-c.Exited():
		return
	default:
	}
	if err := c.Stop(); err != nil {
		t.Errorf("ggcloud did not stop cleanly: %v; its log:\n%s", err, c.log)
	}
}

// runOK runs a program and fails the test if it fails; it returns stdout.
func runOK(t *testing.T, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(prog), strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// discovery is the Discovery API's answer, as a device reads it.
type discovery struct {
	GGGroups []struct {
		GGGroupId string
		Cores     []struct {
			ThingArn     string `json:"thingArn"`
			Connectivity []struct {
				Id, HostAddress, Metadata string
				PortNumber                int
			}
		}
		CAs []string
	}
}

// cloudClient is an HTTPS client of ggcloud with dev's certificate,
// trusting the bundle's root CA: all a device knows before discovery.
func (f *fleet) cloudClient(t *testing.T, dev string) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	pem, err := os.ReadFile(f.rootCA())
	if err != nil || !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("root CA %s: %v", f.rootCA(), err)
	}
	return &http.Client{Timeout: testtool.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: []tls.Certificate{f.identity(dev).tlsCertificate(t)},
	}}}
}

// discover calls the Discovery API as dev for thing; it returns the HTTP
// status and, for 200, the answer.
func (f *fleet) discover(t *testing.T, c *cloudProc, dev, thing string) (int, *discovery, string) {
	t.Helper()
	resp, err := f.cloudClient(t, dev).Get("https://" + c.addr() + "/greengrass/discover/thing/" + thing)
	if err != nil {
		t.Fatalf("discover as %s: %v", dev, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, string(body)
	}
	var d discovery
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("discovery answer: %v\n%s", err, body)
	}
	return resp.StatusCode, &d, string(body)
}

// dialCore makes a TLS connection to addr as a device that trusts caPEM
// (the group CA from discovery) and returns the server's certificate.
func dialCore(t *testing.T, f *fleet, dev, addr, caPEM string) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: testtool.Timeout}, "tcp", addr, deviceTLS(t, f, dev, addr, caPEM))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// deviceTLS is a device's TLS configuration for the core at addr,
// trusting caPEM.
func deviceTLS(t *testing.T, f *fleet, dev, addr, caPEM string) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatalf("no CA certificate in %q", caPEM)
	}
	host, _, _ := net.SplitHostPort(addr)
	return &tls.Config{RootCAs: roots, ServerName: host, Certificates: []tls.Certificate{f.identity(dev).tlsCertificate(t)}}
}

// TestDiscoveryThenConnect: a device that knows only ggcloud's address,
// the root CA and its own certificate discovers the core and the group CA,
// and connects with exactly what discovery returned; another device's
// discovery is refused.
func TestDiscoveryThenConnect(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2")
	f.setRoutes(t, route{"dev1", "sensors/dev1/#", "dev2"})
	c := withCloud(t, f, cloudOptions{dcm: true})
	core := startCore(t, f)
	if !core.log.WaitFor("connectivity reported", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not report its connectivity; its log:\n%s", core.log)
	}

	start := time.Now()
	status, d, body := f.discover(t, c, "dev2", "dev2")
	t.Logf("discovery took %v", time.Since(start))
	if status != http.StatusOK {
		t.Fatalf("discovery as dev2: %d %s", status, body)
	}
	if len(d.GGGroups) != 1 || len(d.GGGroups[0].Cores) != 1 || len(d.GGGroups[0].CAs) == 0 {
		t.Fatalf("discovery: want one group with one core and its CA:\n%s", body)
	}
	g := d.GGGroups[0]
	if want := readJSON(t, f.groupPath())["GroupId"]; g.GGGroupId != want {
		t.Errorf("GGGroupId %q, want %v", g.GGGroupId, want)
	}
	if want := readJSON(t, f.configPath())["coreThing"].(map[string]any)["thingArn"]; g.Cores[0].ThingArn != want {
		t.Errorf("core thingArn %q, want %v", g.Cores[0].ThingArn, want)
	}
	if len(g.Cores[0].Connectivity) == 0 {
		t.Fatalf("no connectivity for the core:\n%s", body)
	}
	ep := g.Cores[0].Connectivity[0]
	addr := net.JoinHostPort(ep.HostAddress, strconv.Itoa(ep.PortNumber))
	if addr != f.addr() {
		t.Errorf("discovered endpoint %s, want the core's %s", addr, f.addr())
	}
	if !core.log.WaitFor("MQTT server certificate renewed", 0, testtool.Timeout, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
	tc := deviceTLS(t, f, "dev2", addr, g.CAs[0])
	dev2, ca, err := f.dial5With(t, tc, &paho.Connect{ClientID: "dev2", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev2 connect with what discovery returned: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}
	dev2.MustSubscribe(t, 1, "sensors/dev1/#")
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", addr, g.CAs[0]), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1 connect: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}
	dev1.MustPublish(t, "sensors/dev1/temp", "discovered", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "discovered"), "discovered")

	// dev1's policy discovers only dev1 itself.
	if status, _, body := f.discover(t, c, "dev1", "dev2"); status != http.StatusForbidden || !strings.Contains(body, "greengrass:Discover") {
		t.Errorf("dev1 discovering dev2: %d %s; want 403 naming greengrass:Discover", status, body)
	}
}

// TestRotationKeepsClientsConnected: with a short certificate validity,
// the core renews ahead of expiry; connected devices stay connected and
// new ones see the new certificate. With ggcloud stopped past expiry, the
// existing connection keeps flowing while new ones are refused; when
// ggcloud is back, a new certificate arrives and new connections succeed.
func TestRotationKeepsClientsConnected(t *testing.T) {
	t.Parallel()
	const validity = 8 * time.Second
	f := newFleet(t, "dev1", "dev2")
	f.setRoutes(t, route{"dev1", "sensors/dev1/#", "dev2"})
	c := withCloud(t, f, cloudOptions{dcm: true, expiryMs: int(validity / time.Millisecond)})
	core := startCore(t, f)
	if !core.log.WaitFor("MQTT server certificate renewed", 0, testtool.Timeout, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
	// The rotation is looked for from here: on a loaded machine it may
	// come while the devices below are still connecting.
	from := core.log.Len()
	groupCA := readFile(t, f.groupCA())
	first, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("first certificate: %v", err)
	}
	if got := first.NotAfter.Sub(first.NotBefore); got > validity+10*time.Minute {
		t.Fatalf("served certificate valid for %v; want the group's %v", got, validity)
	}
	dev2, ca, err := f.dial5With(t, deviceTLS(t, f, "dev2", f.addr(), groupCA), &paho.Connect{ClientID: "dev2", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev2: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}
	dev2.MustSubscribe(t, 1, "sensors/dev1/#")
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", f.addr(), groupCA), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}

	if !core.log.WaitFor("MQTT server certificate rotated", from, validity+testtool.Timeout, core.exited) {
		t.Fatalf("not rotated ahead of expiry; core log:\n%s", core.log)
	}
	dev1.MustPublish(t, "sensors/dev1/temp", "after rotation", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "after rotation"), "after rotation")
	second, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("new connection after rotation: %v", err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("a new connection got the old certificate (serial %s, not after %s)", second.SerialNumber, second.NotAfter)
	}
	// The renewal must begin ahead of expiry; on a loaded machine making
	// the new key and certificate may take seconds, so when it ends is
	// not the point.
	if began := renewalBegan(t, core.log.String()[from:]); !began.Before(first.NotAfter) {
		t.Errorf("the renewal began at %s, after the first certificate expired (%s)", began, first.NotAfter)
	}

	// ggcloud goes away until the served certificate has expired: from
	// then on new connections are refused (the certificate served when
	// ggcloud stopped lives a few seconds at most).
	c.stop(t)
	var last *x509.Certificate
	testtool.Eventually(t, "new connections refused once the served certificate expired", func() bool {
		cert, err := dialCore(t, f, "dev1", f.addr(), groupCA)
		if err == nil {
			last = cert
		}
		return err != nil
	})
	if last != nil && time.Now().Before(last.NotAfter) {
		t.Errorf("a new connection was refused before the served certificate expired (%s)", last.NotAfter)
	}
	// The connections made before still flow.
	dev1.MustPublish(t, "sensors/dev1/temp", "offline and expired", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "offline and expired"), "offline and expired")
	if !strings.Contains(core.log.String(), "renewal failed; retrying") {
		t.Errorf("no renewal retries logged while ggcloud was down; core log:\n%s", core.log)
	}

	from = core.log.Len()
	startCloud(t, c.data, f, c.port, c.mqttPort)
	if !core.log.WaitFor("MQTT server certificate renewed", from, testtool.Timeout, core.exited) {
		t.Fatalf("no new certificate after ggcloud came back; core log:\n%s", core.log)
	}
	third, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("new connection after ggcloud came back: %v", err)
	}
	if !third.NotAfter.After(time.Now()) {
		t.Errorf("served certificate expired at %s", third.NotAfter)
	}
	dev1.MustPublish(t, "sensors/dev1/temp", "back online", 1, false)
	mqtttest.AssertPayloads(t, "dev2", dev2.ReceiveUntil(t, "back online"), "back online")
}

// renewalBegan finds the first "MQTT server certificate renewed" line of
// a renewal (not the first certificate) in a core log and returns when
// that renewal began: the line's time less its took.
func renewalBegan(t *testing.T, log string) time.Time {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="MQTT server certificate renewed"`) || !strings.Contains(line, "first=false") {
			continue
		}
		var at time.Time
		var took time.Duration
		var err error
		for _, field := range strings.Fields(line) {
			switch k, v, _ := strings.Cut(field, "="); k {
			case "time":
				at, err = time.Parse(time.RFC3339Nano, v)
			case "took":
				took, err = time.ParseDuration(v)
			}
			if err != nil {
				t.Fatalf("renewal log line %q: %v", line, err)
			}
		}
		if at.IsZero() {
			t.Fatalf("renewal log line without a time: %q", line)
		}
		return at.Add(-took)
	}
	t.Fatalf("no renewal in the core log:\n%s", log)
	return time.Time{}
}

// TestRotationDisconnectsWhenConfigured: ggcore.disconnectOnRotation
// restores v1's behaviour.
func TestRotationDisconnectsWhenConfigured(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1")
	withCloud(t, f, cloudOptions{dcm: true, expiryMs: 4000})
	f.setConfig(t, "ggcore.disconnectOnRotation", true)
	core := startCore(t, f)
	if !core.log.WaitFor("MQTT server certificate renewed", 0, testtool.Timeout, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", f.addr(), readFile(t, f.groupCA())), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}
	select {
	case <-dev1.Done():
	case <-time.After(testtool.Timeout):
		t.Fatalf("dev1 still connected %v after it connected, with a 4 s certificate; core log:\n%s", testtool.Timeout, core.log)
	}
	if !core.log.WaitFor("disconnected every device", 0, testtool.Timeout, core.exited) {
		t.Errorf("no rotation disconnect logged; core log:\n%s", core.log)
	}
}

// TestCoreWithoutCreateCertificateRefused: a core certificate whose
// policy lacks greengrass:CreateCertificate gets no server certificate,
// and the core says why.
func TestCoreWithoutCreateCertificateRefused(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1")
	c := withCloud(t, f, cloudOptions{dcm: true})
	doc := filepath.Join(t.TempDir(), "policy.json")
	arn := readJSON(t, f.configPath())["coreThing"].(map[string]any)["thingArn"].(string)
	if err := os.WriteFile(doc, []byte(fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
		"Action":["greengrass:GetConnectivityInfo","greengrass:UpdateConnectivityInfo"],"Resource":[%q]}]}`, arn)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Replace the core's policy (ggprov register names it <core>-policy)
	// with one lacking CreateCertificate.
	runOK(t, bin.ggcloud, "--data", c.data, "policy", "create", "core-policy", "--document", doc)
	core := startCore(t, f)
	if !core.log.WaitFor("renewal failed", 0, testtool.Timeout, core.exited) {
		t.Fatalf("no renewal failure logged; core log:\n%s", core.log)
	}
	if log := core.log.String(); !strings.Contains(log, "403") || !strings.Contains(log, "greengrass:CreateCertificate") {
		t.Errorf("the refusal does not name 403 and greengrass:CreateCertificate; core log:\n%s", log)
	}
	if _, err := dialCore(t, f, "dev1", f.addr(), readFile(t, f.groupCA())); err == nil {
		t.Error("a device connected although the core has no server certificate")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDCMKeyInHardware: with the core's keys in a TPM or a PKCS#11 token,
// the device certificate manager makes the MQTT server key there too
// (EC P-256 in a TPM, RSA-2048 in a token), never as a plaintext file,
// serves the certificate ggcloud signs for it, and on rotation replaces
// the key and removes the old one.
func TestDCMKeyInHardware(t *testing.T) {
	for _, tc := range []struct {
		store   string
		keyType string // of the served certificate's key
	}{
		{"tpm", "*ecdsa.PublicKey"},
		{"pkcs11", "*rsa.PublicKey"},
	} {
		t.Run(tc.store, func(t *testing.T) {
			h := newHardware(t, tc.store)
			f := newFleetWith(t, h.initArgs, "dev1")
			withCloud(t, f, cloudOptions{dcm: true, expiryMs: 4000})
			core := startCore(t, f)
			if !core.log.WaitFor("MQTT server certificate renewed", 0, testtool.Timeout, core.exited) {
				t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
			}
			groupCA := readFile(t, f.groupCA())
			first, err := dialCore(t, f, "dev1", f.addr(), groupCA)
			if err != nil {
				t.Fatalf("device connection: %v", err)
			}
			if got := fmt.Sprintf("%T", first.PublicKey); got != tc.keyType {
				t.Errorf("served key %s; want %s", got, tc.keyType)
			}
			state := readJSON(t, filepath.Join(f.dir, "write", "dcm", "state.json"))
			ref, _ := state["keyRef"].(string)
			switch tc.store {
			case "tpm":
				path := strings.TrimPrefix(ref, "file://")
				if !strings.HasPrefix(readFile(t, path), "-----BEGIN TSS2 PRIVATE KEY-----") {
					t.Errorf("the server key %s is not a TPM-wrapped key", path)
				}
			case "pkcs11":
				if !strings.HasPrefix(ref, "pkcs11:") {
					t.Errorf("the server key is %q; want a token key", ref)
				}
			}
			assertNoPlaintextDCMKeys(t, f)

			from := core.log.Len()
			if !core.log.WaitFor("MQTT server certificate rotated", from, testtool.Timeout, core.exited) {
				t.Fatalf("not rotated; core log:\n%s", core.log)
			}
			second, err := dialCore(t, f, "dev1", f.addr(), groupCA)
			if err != nil {
				t.Fatalf("device connection after rotation: %v", err)
			}
			if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
				t.Error("the certificate did not change")
			}
			if strings.Contains(core.log.String(), "could not remove the previous server key") {
				t.Errorf("old key kept; core log:\n%s", core.log)
			}
			if tc.store == "tpm" {
				if _, err := os.Stat(strings.TrimPrefix(ref, "file://")); !os.IsNotExist(err) {
					t.Errorf("the rotated-out key file %s is still there (%v)", ref, err)
				}
			}
		})
	}
}

// assertNoPlaintextDCMKeys: write/dcm holds no plaintext private key.
func assertNoPlaintextDCMKeys(t *testing.T, f *fleet) {
	t.Helper()
	dir := filepath.Join(f.dir, "write", "dcm")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data := readFile(t, filepath.Join(dir, e.Name()))
		if strings.Contains(data, "-----BEGIN PRIVATE KEY") || strings.Contains(data, "-----BEGIN RSA PRIVATE KEY") ||
			strings.Contains(data, "-----BEGIN EC PRIVATE KEY") {
			t.Errorf("%s/%s is a plaintext private key", dir, e.Name())
		}
	}
}
