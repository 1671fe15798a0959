package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// cutter is a TCP forwarder between the core and its upstream broker that
// a test can cut (an outage: listener and connections closed) and mend.
type cutter struct {
	t      *testing.T
	addr   string // where the core connects
	target string // the upstream broker
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	c := &cutter{t: t, addr: "127.0.0.1:0", target: target}
	c.mend()
	t.Cleanup(c.cut)
	return c
}

// mend starts forwarding again on the same address (at first, on a free
// port the kernel picks).
func (c *cutter) mend() {
	c.t.Helper()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatalf("cutter: %v", err)
	}
	c.mu.Lock()
	c.ln = ln
	c.addr = ln.Addr().String()
	c.mu.Unlock()
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", c.target)
			if err != nil {
				in.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, in, out)
			c.mu.Unlock()
			go func() { io.Copy(out, in); out.Close() }()
			go func() { io.Copy(in, out); in.Close() }()
		}
	}()
}

// cut closes the listener and every forwarded connection.
func (c *cutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln != nil {
		c.ln.Close()
		c.ln = nil
	}
	for _, conn := range c.conns {
		conn.Close()
	}
	c.conns = nil
}

// connectCloudApp connects an application on the cloud side to the
// upstream broker: an MQTT 5 client with a certificate from the bundle's
// identity CA, subscribed to filters.
func connectCloudApp(t *testing.T, f *fleet, u *upstream, filters ...string) *mqtttest.Client {
	t.Helper()
	id := loadAuthority(t, f.rootCA(), f.rootCAKey()).issue(t, "cloud-app", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	return connectCloudAppAs(t, u, id, filters...)
}

// connectCloudAppAs connects to the upstream broker with identity id,
// client ID cloud-app, and subscribes to filters.
func connectCloudAppAs(t *testing.T, u *upstream, id identity, filters ...string) *mqtttest.Client {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(u.ca)
	app, _, err := mqtttest.Dial(t, u.addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{id.tlsCertificate(t)}},
		&paho.Connect{ClientID: "cloud-app", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatalf("cloud app: %v\nupstream log:\n%s", err, u.log())
	}
	for _, flt := range filters {
		if code := app.Subscribe(t, 1, flt)[0]; code >= 0x80 {
			t.Fatalf("cloud app subscribe %s: SUBACK 0x%02x\nupstream log:\n%s", flt, code, u.log())
		}
	}
	return app
}

// publishUntilReceived publishes payload on topic from the cloud side
// until dev receives it: the core subscribes upstream just after it
// connects, and what the cloud sends before that subscription is
// acknowledged reaches no one. It fails the test after testtool.Timeout.
func publishUntilReceived(t *testing.T, app, dev *mqtttest.Client, topic, payload string, logs func() string) {
	t.Helper()
	deadline := time.Now().Add(testtool.Timeout)
	for {
		app.MustPublish(t, topic, payload, 1, false)
		if m, ok := dev.TryNext(500 * time.Millisecond); ok {
			if m.Topic != topic || m.Payload != payload {
				t.Fatalf("%s got %v; want %s %q", dev.Name(), m, topic, payload)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s got nothing from the cloud within %v; %s", dev.Name(), testtool.Timeout, logs())
		}
	}
}

// cloudFleet is a fleet whose core's upstream is mosquitto (through a
// cutter), retrying every second, with dev1 → cloud on telemetry/# and
// cloud → dev2 on commands/#.
func cloudFleet(t *testing.T, extraDevices ...string) (*fleet, *upstream, *cutter) {
	t.Helper()
	f := newFleet(t, append([]string{"dev1", "dev2"}, extraDevices...)...)
	routes := []route{{"dev1", "telemetry/#", "cloud"}, {"cloud", "commands/#", "dev2"}}
	for _, d := range extraDevices {
		routes = append(routes, route{d, "telemetry/#", "cloud"})
	}
	f.setRoutes(t, routes...)
	u := startUpstream(t, f)
	cut := newCutter(t, u.addr)
	host, port, _ := net.SplitHostPort(cut.addr)
	f.setConfig(t, "coreThing.iotHost", host)
	p, _ := strconv.Atoi(port)
	f.setConfig(t, "coreThing.iotMqttPort", p)
	f.setConfig(t, "coreThing.mqttMaxConnectionRetryInterval", 1)
	return f, u, cut
}

// TestCloudFlowsThroughMosquitto: device → core → cloud and cloud → core
// → device, with mosquitto as AWS IoT Core.
func TestCloudFlowsThroughMosquitto(t *testing.T) {
	t.Parallel()
	f, u, _ := cloudFleet(t)
	app := connectCloudApp(t, f, u, "telemetry/#")
	core := startCore(t, f)
	if !core.log.WaitFor("connected upstream", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not connect upstream; its log:\n%s\nmosquitto:\n%s", core.log, u.log())
	}
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.MustSubscribe(t, 1, "commands/#")

	dev1.MustPublish(t, "telemetry/dev1/temp", "21.5", 1, false)
	mqtttest.AssertPayloads(t, "cloud app", app.ReceiveUntil(t, "21.5"), "21.5")

	publishUntilReceived(t, app, dev2, "commands/dev2/reboot", "reboot now",
		func() string { return "core log:\n" + core.log.String() })
}

// TestSpoolSurvivesOutageAndKill: with the upstream cut, devices publish
// 10,000 QoS 1 messages; the core is killed with SIGKILL and restarted
// while still cut off; when the upstream is back, every message arrives,
// in each device's order. Duplicates (at least once) are reported.
func TestSpoolSurvivesOutageAndKill(t *testing.T) {
	t.Parallel()
	const total = 10000 // 2500 per publisher
	f, u, cut := cloudFleet(t, "dev3", "dev4", "dev5")
	app := connectCloudApp(t, f, u, "telemetry/#")
	core := startCore(t, f)
	if !core.log.WaitFor("connected upstream", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not connect upstream; its log:\n%s", core.log)
	}
	cut.cut()
	names := []string{"dev1", "dev3", "dev4", "dev5"} // the publishers; dev2 only receives
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, name := range names {
		pub := f.connect5(t, name)
		wg.Go(func() {
			for i := range total / len(names) {
				ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
				_, err := pub.Paho.Publish(ctx, &paho.Publish{Topic: "telemetry/" + name, QoS: 1, Payload: []byte(fmt.Sprintf("%s %06d", name, i))})
				cancel()
				if err != nil {
					errs <- fmt.Errorf("%s message %d: %w", name, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d QoS 1 messages spooled in %v (%.0f msgs/s)", total, time.Since(start).Round(time.Millisecond),
		float64(total)/time.Since(start).Seconds())

	core.stopped = true
	_ = core.cmd.Process.Signal(syscall.SIGKILL)
	<-core.exited
	core = startCore(t, f)
	if !strings.Contains(core.log.String(), fmt.Sprintf("messages=%d", total)) {
		t.Errorf("after SIGKILL the spool does not hold %d messages; core log:\n%s", total, core.log)
	}
	drainStart := time.Now()
	cut.mend()
	last := map[string]int{}
	seen := map[string]bool{}
	dups := 0
	for len(seen) < total {
		m, ok := app.TryNext(testtool.Timeout)
		if !ok {
			t.Fatalf("%d of %d messages arrived upstream, then none for %v; core log:\n%s", len(seen), total, testtool.Timeout, core.log)
		}
		if seen[m.Payload] {
			dups++
			continue
		}
		seen[m.Payload] = true
		var name string
		var n int
		fmt.Sscanf(m.Payload, "%s %d", &name, &n)
		if prev, ok := last[name]; ok && n < prev {
			t.Fatalf("%s's message %d arrived after %d: out of order", name, n, prev)
		}
		last[name] = n
	}
	drain := time.Since(drainStart)
	t.Logf("drained %d messages upstream in %v (%.0f msgs/s), %d duplicates", total, drain.Round(time.Millisecond),
		float64(total)/drain.Seconds(), dups)
}

// TestSpoolFullDropsOldest: with the group's GGCloudSpooler size at v1's
// minimum (256 KiB) and the upstream cut, more messages than fit are
// published; the oldest are dropped and counted, and the newest arrive in
// order when the upstream is back.
func TestSpoolFullDropsOldest(t *testing.T) {
	t.Parallel()
	f, u, cut := cloudFleet(t)
	g := readJSON(t, f.groupPath())
	g["Functions"] = []any{map[string]any{
		"Id": "spooler", "FunctionArn": "arn:aws:lambda:::function:GGCloudSpooler:1",
		"FunctionConfiguration": map[string]any{"Environment": map[string]any{"Variables": map[string]any{
			"GG_CONFIG_MAX_SIZE_BYTES": "262144", "GG_CONFIG_STORAGE_TYPE": "FileSystem"}}},
	}}
	writeJSON(t, f.groupPath(), g)
	app := connectCloudApp(t, f, u, "telemetry/#")
	core := startCore(t, f)
	if !strings.Contains(core.log.String(), "max_bytes=262144") {
		t.Errorf("the spool was not sized from GG_CONFIG_MAX_SIZE_BYTES; core log:\n%s", core.log)
	}
	cut.cut()
	dev1 := f.connect5(t, "dev1")
	t.Logf("ggcore resident memory with an empty spool: %s", residentMemory(core.cmd.Process.Pid))
	const total = 4000
	pad := strings.Repeat("x", 100)
	for i := range total {
		dev1.MustPublish(t, "telemetry/dev1", fmt.Sprintf("%06d %s", i, pad), 1, false)
	}
	if !core.log.WaitFor("spool full: dropped the oldest messages", 0, testtool.Timeout, core.exited) {
		t.Fatalf("no drop logged; core log:\n%s", core.log)
	}
	t.Logf("ggcore resident memory with a full spool: %s", residentMemory(core.cmd.Process.Pid))
	cut.mend()
	var got []int
	for len(got) == 0 || got[len(got)-1] != total-1 {
		m, ok := app.TryNext(testtool.Timeout)
		if !ok {
			t.Fatalf("the newest message never arrived; %d arrived; core log:\n%s", len(got), core.log)
		}
		var n int
		fmt.Sscanf(m.Payload, "%d", &n)
		got = append(got, n)
	}
	if len(got) == 0 || len(got) >= total || got[0] == 0 {
		t.Fatalf("%d messages arrived, the first %v; want fewer than %d, the oldest dropped", len(got), got[:min(3, len(got))], total)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("arrived out of order or with a gap among the kept: %d after %d", got[i], got[i-1])
		}
	}
	t.Logf("%d of %d messages kept (the newest), %d dropped", len(got), total, got[0])
}

// writeTemp writes data into a new file in the test's temp dir.
func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCloudFlowsThroughGGCloud: ggcloud's MQTT broker stands in for AWS
// IoT Core, with the same policies as its API: device → core → cloud and
// cloud → core → device flow once the operator allows the topics, and a
// deployment reaches the core at once by notification (its polling is
// set to an hour).
func TestCloudFlowsThroughGGCloud(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2")
	f.setRoutes(t, route{"dev1", "telemetry/#", "cloud"}, route{"cloud", "commands/#", "dev2"})
	c := withCloud(t, f, cloudOptions{iot: true})
	f.setConfig(t, "coreThing.mqttMaxConnectionRetryInterval", 1)
	f.setConfig(t, "ggcore.deploymentPollSeconds", 3600)
	arn := readJSON(t, f.configPath())["coreThing"].(map[string]any)["thingArn"].(string)
	prefix := strings.TrimSuffix(arn, "thing/core")
	ggcloud := func(args ...string) string {
		return runOK(t, bin.ggcloud, append([]string{"--data", c.data}, args...)...)
	}

	// v1's minimal core policy allows only $aws/things/core-*: the operator adds
	// the fleet's topics for the core.
	coreCert, err := os.ReadFile(filepath.Join(f.dir, "certs", "core.cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(coreCert)
	coreID := certificateID(blk.Bytes)
	ggcloud("policy", "create", "core-bridge", "--document", writeTemp(t, "bridge.json", fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Publish","Resource":"%stopic/telemetry/*"},
		{"Effect":"Allow","Action":"iot:Subscribe","Resource":"%stopicfilter/commands/*"},
		{"Effect":"Allow","Action":"iot:Receive","Resource":"%stopic/commands/*"}]}`, prefix, prefix, prefix)))
	ggcloud("policy", "attach", "core-bridge", "--cert", coreID)

	// The cloud-side application: a thing of its own.
	app := loadAuthority(t, f.rootCA(), f.rootCAKey()).issue(t, "cloud-app", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	ggcloud("thing", "create", "cloud-app")
	appID := strings.TrimSpace(ggcloud("cert", "register", "--thing", "cloud-app", "--pem", app.certFile))
	appID = strings.Fields(appID)[0]
	ggcloud("policy", "create", "cloud-app", "--document", writeTemp(t, "app.json", fmt.Sprintf(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Connect","Resource":"%sclient/cloud-app"},
		{"Effect":"Allow","Action":["iot:Subscribe"],"Resource":"%stopicfilter/telemetry/*"},
		{"Effect":"Allow","Action":["iot:Receive"],"Resource":"%stopic/telemetry/*"},
		{"Effect":"Allow","Action":"iot:Publish","Resource":"%stopic/commands/*"}]}`, prefix, prefix, prefix, prefix)))
	ggcloud("policy", "attach", "cloud-app", "--cert", appID)

	core := startCore(t, f)
	if !core.log.WaitFor("connected upstream", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not connect to ggcloud's broker; core log:\n%s\nggcloud log:\n%s", core.log, c.log)
	}
	u := &upstream{addr: c.mqttAddr(), ca: loadAuthority(t, f.rootCA(), f.rootCAKey()).Cert}
	cloudApp := connectCloudAppAs(t, u, app, "telemetry/#")
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.MustSubscribe(t, 1, "commands/#")
	dev1.MustPublish(t, "telemetry/dev1/temp", "22.0", 1, false)
	mqtttest.AssertPayloads(t, "cloud app", cloudApp.ReceiveUntil(t, "22.0"), "22.0")

	publishUntilReceived(t, cloudApp, dev2, "commands/dev2/x", "from ggcloud",
		func() string { return "core log:\n" + core.log.String() + "\nggcloud log:\n" + c.log.String() })

	group := readJSON(t, f.groupPath())["GroupId"].(string)
	ggcloud("group", "add-subscription", group, "--id", "s9", "--source", "dev2", "--subject", "status/#", "--target", "dev1")
	from := core.log.Len()
	id := c.deploy(t, group)
	if !core.log.WaitFor("deployment applied", from, testtool.Timeout, core.exited) {
		t.Fatalf("deployment %s not applied within %v (polling is hourly); core log:\n%s", id, testtool.Timeout, core.log)
	}
	if !strings.Contains(core.log.String()[from:], "deployment notification from the cloud") {
		t.Errorf("applied without the notification; core log:\n%s", core.log)
	}
}

// residentMemory reads a process's VmRSS and VmHWM from /proc.
func residentMemory(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
