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
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// cloudProc is a running ggcloud (the control plane) on a loopback port.
type cloudProc struct {
	data string // its --data directory
	port int
	// mqttPort is its MQTT broker's (AWS IoT Core's stand-in) port.
	mqttPort int
	cmd      *exec.Cmd
	log      *logBuffer
	exited   chan struct{}
	err      error
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
	c := startCloud(t, filepath.Join(t.TempDir(), "ggcloud"), f, freePort(t), freePort(t))
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
	c := &cloudProc{data: data, port: port, mqttPort: mqttPort, log: &logBuffer{}, exited: make(chan struct{})}
	c.cmd = exec.Command(bin.ggcloud, "--data", data, "serve", "--listen", c.addr(), "--mqtt-listen", c.mqttAddr(),
		"--cert", filepath.Join(f.dir, "ggcloud", "server.cert.pem"), "--key", filepath.Join(f.dir, "ggcloud", "server.key.pem"),
		"--test-min-validity", "2s")
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start ggcloud: %v", err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.exited) }()
	if !c.log.waitFor("ggcloud ready", 0, readyTimeout, c.exited) {
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Fatalf("ggcloud not ready (%v); its log:\n%s", c.err, c.log)
	}
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop stops ggcloud with SIGTERM and expects a clean exit.
func (c *cloudProc) stop(t *testing.T) {
	t.Helper()
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
		if c.err != nil {
			t.Errorf("ggcloud did not stop cleanly: %v; its log:\n%s", c.err, c.log)
		}
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("ggcloud did not exit within %v of SIGTERM", stopTimeout)
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
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
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
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, deviceTLS(t, f, dev, addr, caPEM))
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
	if !core.log.waitFor("connectivity reported", 0, 20*time.Second, core.exited) {
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
	if !core.log.waitFor("MQTT server certificate renewed", 0, 20*time.Second, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
	tc := deviceTLS(t, f, "dev2", addr, g.CAs[0])
	dev2, ca, err := f.dial5With(t, tc, &paho.Connect{ClientID: "dev2", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev2 connect with what discovery returned: %v (CONNACK %s)", err, connackCode(ca))
	}
	dev2.mustSubscribe(t, "sensors/dev1/#", 1)
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", addr, g.CAs[0]), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1 connect: %v (CONNACK %s)", err, connackCode(ca))
	}
	dev1.mustPublish(t, "sensors/dev1/temp", "discovered", 1, false)
	assertReceived(t, "dev2", dev2.receiveUntil(t, "discovered"), "discovered")

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
	if !core.log.waitFor("MQTT server certificate renewed", 0, 20*time.Second, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
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
		t.Fatalf("dev2: %v (CONNACK %s)", err, connackCode(ca))
	}
	dev2.mustSubscribe(t, "sensors/dev1/#", 1)
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", f.addr(), groupCA), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1: %v (CONNACK %s)", err, connackCode(ca))
	}

	from := core.log.Len()
	if !core.log.waitFor("MQTT server certificate rotated", from, validity+5*time.Second, core.exited) {
		t.Fatalf("not rotated ahead of expiry; core log:\n%s", core.log)
	}
	dev1.mustPublish(t, "sensors/dev1/temp", "after rotation", 1, false)
	assertReceived(t, "dev2", dev2.receiveUntil(t, "after rotation"), "after rotation")
	second, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("new connection after rotation: %v", err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || !second.NotAfter.After(first.NotAfter) {
		t.Fatalf("a new connection got the old certificate (serial %s, not after %s)", second.SerialNumber, second.NotAfter)
	}
	if time.Now().After(first.NotAfter) {
		t.Errorf("rotated only after the first certificate expired")
	}

	// ggcloud goes away until the served certificate has expired.
	c.stop(t)
	current, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("connection with ggcloud stopped, before expiry: %v", err)
	}
	time.Sleep(time.Until(current.NotAfter) + 500*time.Millisecond)
	dev1.mustPublish(t, "sensors/dev1/temp", "offline and expired", 1, false)
	assertReceived(t, "dev2", dev2.receiveUntil(t, "offline and expired"), "offline and expired")
	if _, err := dialCore(t, f, "dev1", f.addr(), groupCA); err == nil {
		t.Fatal("a new connection was accepted with the certificate expired")
	}
	if !strings.Contains(core.log.String(), "renewal failed; retrying") {
		t.Errorf("no renewal retries logged while ggcloud was down; core log:\n%s", core.log)
	}

	from = core.log.Len()
	startCloud(t, c.data, f, c.port, c.mqttPort)
	if !core.log.waitFor("MQTT server certificate renewed", from, 20*time.Second, core.exited) {
		t.Fatalf("no new certificate after ggcloud came back; core log:\n%s", core.log)
	}
	third, err := dialCore(t, f, "dev1", f.addr(), groupCA)
	if err != nil {
		t.Fatalf("new connection after ggcloud came back: %v", err)
	}
	if !third.NotAfter.After(time.Now()) {
		t.Errorf("served certificate expired at %s", third.NotAfter)
	}
	dev1.mustPublish(t, "sensors/dev1/temp", "back online", 1, false)
	assertReceived(t, "dev2", dev2.receiveUntil(t, "back online"), "back online")
}

// TestRotationDisconnectsWhenConfigured: ggcore.disconnectOnRotation
// restores v1's behaviour.
func TestRotationDisconnectsWhenConfigured(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1")
	withCloud(t, f, cloudOptions{dcm: true, expiryMs: 4000})
	f.setConfig(t, "ggcore.disconnectOnRotation", true)
	core := startCore(t, f)
	if !core.log.waitFor("MQTT server certificate renewed", 0, 20*time.Second, core.exited) {
		t.Fatalf("no MQTT server certificate; core log:\n%s", core.log)
	}
	dev1, ca, err := f.dial5With(t, deviceTLS(t, f, "dev1", f.addr(), readFile(t, f.groupCA())), &paho.Connect{ClientID: "dev1", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("dev1: %v (CONNACK %s)", err, connackCode(ca))
	}
	select {
	case <-dev1.c.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("dev1 still connected 15 s after it connected, with a 4 s certificate; core log:\n%s", core.log)
	}
	if !core.log.waitFor("disconnected every device", 0, 5*time.Second, core.exited) {
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
	if !core.log.waitFor("renewal failed", 0, 20*time.Second, core.exited) {
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
		{"tpm2", "*ecdsa.PublicKey"},
		{"pkcs11", "*rsa.PublicKey"},
	} {
		t.Run(tc.store, func(t *testing.T) {
			h := newHardware(t, tc.store)
			f := newFleetWith(t, h.initArgs, "dev1")
			withCloud(t, f, cloudOptions{dcm: true, expiryMs: 4000})
			core := startCore(t, f)
			if !core.log.waitFor("MQTT server certificate renewed", 0, 30*time.Second, core.exited) {
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
			case "tpm2":
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
			if !core.log.waitFor("MQTT server certificate rotated", from, 15*time.Second, core.exited) {
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
			if tc.store == "tpm2" {
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
