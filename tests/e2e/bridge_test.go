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

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
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
	c := &cutter{t: t, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))), target: target}
	c.mend()
	t.Cleanup(c.cut)
	return c
}

// mend starts forwarding again on the same address.
func (c *cutter) mend() {
	c.t.Helper()
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		c.t.Fatalf("cutter: %v", err)
	}
	c.mu.Lock()
	c.ln = ln
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

// cloudApp is an application on the cloud side: an MQTT 5 client of the
// upstream broker with a certificate from the bundle's identity CA.
type cloudApp struct {
	c    *paho.Client
	msgs chan message
}

func connectCloudApp(t *testing.T, f *fleet, u *upstream, filters ...string) *cloudApp {
	t.Helper()
	id := loadAuthority(t, f.rootCA(), f.rootCAKey()).issue(t, "cloud-app", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	return connectCloudAppAs(t, u, id, filters...)
}

// connectCloudAppAs connects to the upstream broker with identity id,
// client ID cloud-app, and subscribes to filters.
func connectCloudAppAs(t *testing.T, u *upstream, id identity, filters ...string) *cloudApp {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(u.ca)
	conn, err := tls.Dial("tcp", u.addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{id.tlsCertificate(t)}})
	if err != nil {
		t.Fatalf("cloud app: %v\n%s", err, u.log())
	}
	app := &cloudApp{msgs: make(chan message, 20000)}
	app.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn), // paho writes from more than one goroutine
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			app.msgs <- message{topic: pr.Packet.Topic, payload: string(pr.Packet.Payload), qos: pr.Packet.QoS}
			return true, nil
		}},
		OnClientError: func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := app.c.Connect(ctx, &paho.Connect{ClientID: "cloud-app", CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatalf("cloud app connect: %v", err)
	}
	t.Cleanup(func() { app.c.Disconnect(&paho.Disconnect{}); conn.Close() })
	for _, flt := range filters {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := app.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: flt, QoS: 1}}}); err != nil {
			t.Fatalf("cloud app subscribe %s: %v\nmosquitto:\n%s", flt, err, u.log())
		}
	}
	return app
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
	if !core.log.waitFor("connected upstream", 0, 20*time.Second, core.exited) {
		t.Fatalf("the core did not connect upstream; its log:\n%s\nmosquitto:\n%s", core.log, u.log())
	}
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.mustSubscribe(t, "commands/#", 1)

	dev1.mustPublish(t, "telemetry/dev1/temp", "21.5", 1, false)
	assertReceived(t, "cloud app", collectUntil(t, "cloud app", app.msgs, "21.5"), "21.5")

	// The upstream subscription may follow the connection by a moment.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := app.c.Publish(ctx, &paho.Publish{Topic: "commands/dev2/reboot", QoS: 1, Payload: []byte("reboot now")})
		cancel()
		if err != nil {
			t.Fatalf("cloud app publish: %v", err)
		}
		select {
		case m := <-dev2.msgs:
			if m.topic != "commands/dev2/reboot" || m.payload != "reboot now" {
				t.Fatalf("dev2 got %v", m)
			}
			return
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev2 got nothing from the cloud; core log:\n%s", core.log)
		}
	}
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
	if !core.log.waitFor("connected upstream", 0, 20*time.Second, core.exited) {
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
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, err := pub.c.Publish(ctx, &paho.Publish{Topic: "telemetry/" + name, QoS: 1, Payload: []byte(fmt.Sprintf("%s %06d", name, i))})
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
		select {
		case m := <-app.msgs:
			if seen[m.payload] {
				dups++
				continue
			}
			seen[m.payload] = true
			var name string
			var n int
			fmt.Sscanf(m.payload, "%s %d", &name, &n)
			if prev, ok := last[name]; ok && n < prev {
				t.Fatalf("%s's message %d arrived after %d: out of order", name, n, prev)
			}
			last[name] = n
		case <-time.After(60 * time.Second):
			t.Fatalf("%d of %d messages arrived upstream; core log:\n%s", len(seen), total, core.log)
		}
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
		dev1.mustPublish(t, "telemetry/dev1", fmt.Sprintf("%06d %s", i, pad), 1, false)
	}
	if !core.log.waitFor("spool full: dropped the oldest messages", 0, 10*time.Second, core.exited) {
		t.Fatalf("no drop logged; core log:\n%s", core.log)
	}
	t.Logf("ggcore resident memory with a full spool: %s", residentMemory(core.cmd.Process.Pid))
	cut.mend()
	var got []int
	for {
		select {
		case m := <-app.msgs:
			var n int
			fmt.Sscanf(m.payload, "%d", &n)
			got = append(got, n)
			if n == total-1 {
				goto done
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the newest message never arrived; %d arrived; core log:\n%s", len(got), core.log)
		}
	}
done:
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

	// The seed's policy allows only $aws/things/core-*: the operator adds
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
	if !core.log.waitFor("connected upstream", 0, 20*time.Second, core.exited) {
		t.Fatalf("the core did not connect to ggcloud's broker; core log:\n%s\nggcloud log:\n%s", core.log, c.log)
	}
	u := &upstream{addr: c.mqttAddr(), ca: loadAuthority(t, f.rootCA(), f.rootCAKey()).cert}
	cloudApp := connectCloudAppAs(t, u, app, "telemetry/#")
	dev1, dev2 := f.connect5(t, "dev1"), f.connect5(t, "dev2")
	dev2.mustSubscribe(t, "commands/#", 1)
	dev1.mustPublish(t, "telemetry/dev1/temp", "22.0", 1, false)
	assertReceived(t, "cloud app", collectUntil(t, "cloud app", cloudApp.msgs, "22.0"), "22.0")

	deadline := time.Now().Add(10 * time.Second)
	for delivered := false; !delivered; {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cloudApp.c.Publish(ctx, &paho.Publish{Topic: "commands/dev2/x", QoS: 1, Payload: []byte("from ggcloud")})
		cancel()
		if err != nil {
			t.Fatalf("cloud app publish: %v", err)
		}
		select {
		case m := <-dev2.msgs:
			if m.payload != "from ggcloud" {
				t.Fatalf("dev2 got %v", m)
			}
			delivered = true
		case <-time.After(500 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("dev2 got nothing from the cloud; core log:\n%s\nggcloud log:\n%s", core.log, c.log)
			}
		}
	}

	group := readJSON(t, f.groupPath())["GroupId"].(string)
	ggcloud("group", "add-subscription", group, "--id", "s9", "--source", "dev2", "--subject", "status/#", "--target", "dev1")
	from := core.log.Len()
	id := c.deploy(t, group)
	if !core.log.waitFor("deployment applied", from, 10*time.Second, core.exited) {
		t.Fatalf("deployment %s not applied within 10 s (polling is hourly); core log:\n%s", id, core.log)
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
