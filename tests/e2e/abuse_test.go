package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// The abuse tests share one measure: established devices (flowPairs
// publishers, each sending flowRate QoS 1 messages a second to its own
// subscriber) keep at least minKept of their undisturbed delivery rate
// while the core is abused. The load is paced, well under what the core
// can carry, so the undisturbed rate is the offered rate on any machine;
// what the abuse may not do is starve them. The two rates are measured
// the same way, over at least flowWindow each, interleaved: abuseRounds
// rounds of an undisturbed window then a disturbed one, and the median of
// the rounds' ratios is asserted, so that one burst of load from outside
// the test (a build, another test binary) cannot decide the result alone.
//
// The abuse tests do not run in parallel with each other or with the
// other e2e tests: they are sequential, and Go runs a package's parallel
// tests only after its sequential ones.
const (
	flowPairs   = 4
	flowRate    = 100 // messages a second per publisher
	flowWindow  = 2 * time.Second
	abuseRounds = 3
	minKept     = 0.8
)

// flowDevices are the established devices' thing names.
func flowDevices() []string {
	var d []string
	for i := range flowPairs {
		d = append(d, fmt.Sprintf("pub%d", i), fmt.Sprintf("sub%d", i))
	}
	return d
}

// flowRoutes route each publisher to its subscriber.
func flowRoutes() []route {
	var r []route
	for i := range flowPairs {
		r = append(r, route{fmt.Sprintf("pub%d", i), fmt.Sprintf("flow/pub%d/#", i), fmt.Sprintf("sub%d", i)})
	}
	return r
}

// flow is the established devices' traffic.
type flow struct {
	got  atomic.Int64 // messages the subscribers received
	errs chan error
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// startFlow connects the established devices and starts their traffic;
// it stops when the test ends.
func startFlow(t *testing.T, f *fleet) *flow {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fl := &flow{stop: cancel, errs: make(chan error, flowPairs)}
	t.Cleanup(func() { cancel(); fl.wg.Wait() })
	for i := range flowPairs {
		sub := f.connect5(t, fmt.Sprintf("sub%d", i))
		sub.Discard()
		sub.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) { fl.got.Add(1); return true, nil })
		sub.MustSubscribe(t, 1, fmt.Sprintf("flow/pub%d/#", i))
		pub := f.connect5(t, fmt.Sprintf("pub%d", i))
		topic := fmt.Sprintf("flow/pub%d/data", i)
		fl.wg.Go(func() {
			start, sent := time.Now(), 0
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				for due := int(time.Since(start).Seconds() * flowRate); sent < due; sent++ {
					_, err := pub.Paho.PublishWithOptions(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("established device data")},
						paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
					if err != nil {
						if ctx.Err() == nil {
							fl.errs <- fmt.Errorf("%s: publish: %w", topic, err)
						}
						return
					}
				}
			}
		})
	}
	// Wait until the flow runs at its pace before anything is measured.
	testtool.Eventually(t, "established devices' messages flowing", func() bool { return fl.got.Load() >= flowPairs*flowRate/2 })
	return fl
}

// measure returns the subscribers' delivery rate over at least flowWindow
// and until busy (if not nil) is closed.
func (fl *flow) measure(t *testing.T, busy <-chan struct{}) float64 {
	t.Helper()
	start, from := time.Now(), fl.got.Load()
	ended := func() bool {
		if busy == nil {
			return true
		}
		select {
		case <-busy:
			return true
		default:
			return false
		}
	}
	if !testtool.Poll(flowWindow+2*testtool.Timeout, func() bool { return time.Since(start) >= flowWindow && ended() }) {
		t.Fatalf("the abuse did not end within %v", flowWindow+2*testtool.Timeout)
	}
	return float64(fl.got.Load()-from) / time.Since(start).Seconds()
}

// assertKept runs abuseRounds rounds of an undisturbed measurement then
// one while abuse(round) runs, and fails the test if abuse returned an
// error or the median ratio of the two rates is below minKept.
func (fl *flow) assertKept(t *testing.T, what string, abuse func(round int) error) {
	t.Helper()
	ratios := make([]float64, 0, abuseRounds)
	for r := range abuseRounds {
		base := fl.measure(t, nil)
		busy := make(chan struct{})
		var err error
		var took time.Duration
		go func() {
			defer close(busy)
			start := time.Now()
			err = abuse(r)
			took = time.Since(start)
		}()
		during := fl.measure(t, busy)
		<-busy
		t.Logf("%s, round %d (abuse %v): established devices received %.0f msg/s undisturbed, %.0f msg/s during (%.2f×; offered %d)",
			what, r+1, took.Round(time.Millisecond), base, during, during/base, flowPairs*flowRate)
		if err != nil {
			t.Errorf("%s, round %d: %v", what, r+1, err)
		}
		ratios = append(ratios, during/base)
	}
	slices.Sort(ratios)
	if median := ratios[len(ratios)/2]; median < minKept {
		t.Errorf("%s: established devices kept a median %.2f× of their undisturbed rate (rounds: %.2f); want at least %.1f×",
			what, median, ratios, minKept)
	}
	select {
	case e := <-fl.errs:
		t.Errorf("established devices: %v", e)
	default:
	}
}

// parallel runs n calls of fn on workers goroutines and joins their errors
// (at most 5 are kept).
func parallel(n, workers int, fn func(i int) error) error {
	var (
		mu   sync.Mutex
		errs []error
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				if err := fn(i); err != nil {
					mu.Lock()
					if len(errs) < 5 {
						errs = append(errs, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// 500 mutual-TLS handshakes with certificates the CA signed but the group
// does not register: each is refused at CONNECT (0x87), and the
// established devices keep flowing.
func TestAbuseUnregisteredCertificates(t *testing.T) {
	f := newFleet(t, flowDevices()...)
	f.setRoutes(t, flowRoutes()...)
	startCore(t, f)
	ca := loadAuthority(t, f.rootCA(), f.rootCAKey())
	const certs, attempts = 50, 500
	var cfgs []*tls.Config
	for i := range certs {
		id := ca.issue(t, fmt.Sprintf("stranger%d", i), time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		cfgs = append(cfgs, f.clientTLS(t, id.tlsCertificate(t)))
	}
	fl := startFlow(t, f)
	var refused atomic.Int64
	fl.assertKept(t, "500 handshakes with unregistered certificates", func(r int) error {
		return parallel(attempts, 25, func(i int) error {
			id := fmt.Sprintf("stranger%d-%d", r, i) // certificate stranger<i%certs>
			cl, ca, err := mqtttest.Dial(t, f.addr(), cfgs[i%certs], &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30})
			if err == nil {
				cl.Disconnect()
				return fmt.Errorf("%s (unregistered) connected", id)
			}
			if ca == nil || ca.ReasonCode != 0x87 {
				return fmt.Errorf("%s: %v (CONNACK %s); want CONNACK 0x87", id, err, mqtttest.ConnackCode(ca))
			}
			refused.Add(1)
			return nil
		})
	})
	if refused.Load() != abuseRounds*attempts {
		t.Errorf("%d of %d unregistered connections refused with 0x87", refused.Load(), abuseRounds*attempts)
	}
}

// 200 TCP connections that never finish TLS (half silent, half stopping
// inside a ClientHello): the established devices keep flowing, a device
// can still connect meanwhile, and the core hangs up on every stalled
// socket by itself.
func TestAbuseStalledHandshakes(t *testing.T) {
	late := []string{"late0", "late1", "late2"}
	f := newFleet(t, append(flowDevices(), late[:abuseRounds]...)...)
	f.setRoutes(t, flowRoutes()...)
	startCore(t, f)
	fl := startFlow(t, f)
	const stalled = 200
	conns := make([]net.Conn, abuseRounds*stalled)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	lateTLS := make([]*tls.Config, abuseRounds)
	for r := range lateTLS {
		lateTLS[r] = f.clientTLS(t, f.identity(late[r]).tlsCertificate(t))
	}
	lateIn := make([]time.Duration, abuseRounds)
	fl.assertKept(t, "200 connections that never finish TLS", func(r int) error {
		// Each round's connections stay open until the core hangs up.
		if err := parallel(stalled, 20, func(i int) error {
			c, err := net.DialTimeout("tcp", f.addr(), testtool.Timeout)
			if err != nil {
				return fmt.Errorf("stalled connection %d: %w", i, err)
			}
			conns[r*stalled+i] = c
			if i%2 == 1 {
				// A TLS record header announcing a 512-byte handshake
				// message, and the first bytes of a ClientHello.
				_, err = c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03})
			}
			return err
		}); err != nil {
			return err
		}
		start := time.Now()
		cl, _, err := f.dial5With(t, lateTLS[r], &paho.Connect{ClientID: late[r], CleanStart: true, KeepAlive: 30})
		if err != nil {
			return fmt.Errorf("a device could not connect while 200 handshakes stalled: %w", err)
		}
		lateIn[r] = time.Since(start)
		cl.Disconnect()
		return nil
	})
	t.Logf("a device connected in %v while %d handshakes stalled (one each round)", lateIn, stalled)
	// The core gives up on each stalled handshake (mochiext.HandshakeTimeout).
	err := parallel(len(conns), len(conns), func(i int) error {
		c := conns[i]
		_ = c.SetReadDeadline(time.Now().Add(testtool.Timeout))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("stalled connection %d still open after %v", i, testtool.Timeout)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// mqttPacket frames an MQTT control packet: first byte, remaining length
// (variable byte integer), body.
func mqttPacket(first byte, body []byte) []byte {
	out := []byte{first}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// mqttString is an MQTT UTF-8 string: two-byte length and the bytes.
func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

// connect5Packet is an MQTT 5 CONNECT with a clean start.
func connect5Packet(clientID string) []byte {
	body := append(mqttString("MQTT"), 5, 0x02, 0, 30, 0)
	return mqttPacket(0x10, append(body, mqttString(clientID)...))
}

// rawConnect opens a TLS connection with cfg, sends CONNECT as dev and
// checks the CONNACK, for a test that then writes bytes no client library
// would. It may run on any goroutine.
func rawConnect(f *fleet, cfg *tls.Config, dev string) (*tls.Conn, error) {
	d := tls.Dialer{Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
	defer cancel()
	nc, err := d.DialContext(ctx, "tcp", f.addr())
	if err != nil {
		return nil, err
	}
	c := nc.(*tls.Conn)
	_ = c.SetDeadline(time.Now().Add(testtool.Timeout))
	if _, err := c.Write(connect5Packet(dev)); err != nil {
		c.Close()
		return nil, err
	}
	r := bufio.NewReader(c)
	first, err := r.ReadByte()
	if err == nil && first != 0x20 {
		err = fmt.Errorf("first packet 0x%02x, want CONNACK", first)
	}
	var n, shift int
	for err == nil {
		var b byte
		if b, err = r.ReadByte(); err == nil {
			n |= int(b&0x7f) << shift
			shift += 7
			if b&0x80 == 0 {
				break
			}
		}
	}
	body := make([]byte, n)
	if err == nil {
		_, err = io.ReadFull(r, body)
	}
	if err == nil && (n < 2 || body[1] != 0) {
		err = fmt.Errorf("CONNACK %x: refused", body)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: CONNECT: %w", dev, err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Registered devices that send malformed or oversize packets are
// disconnected; the established devices keep flowing.
func TestAbuseMalformedAndOversizePackets(t *testing.T) {
	publish := func(topic string, payload []byte) []byte {
		return mqttPacket(0x30, append(append(mqttString(topic), 0), payload...))
	}
	huge := make([]byte, 300<<10) // over the 256 KiB packet limit
	cases := []struct {
		name string
		data []byte
	}{
		{"reserved packet type 0", []byte{0x00, 0x00}},
		{"remaining length of five bytes", []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"PUBLISH at QoS 3", mqttPacket(0x36, append(mqttString("a/b"), 0, 1, 0))},
		{"PUBLISH to a wildcard topic", publish("a/#", []byte("x"))},
		{"PUBLISH topic not UTF-8", publish("a/\xff\xfe", []byte("x"))},
		{"PUBLISH shorter than its topic length", mqttPacket(0x30, []byte{0x00, 0x40, 'a'})},
		{"SUBSCRIBE without filters", mqttPacket(0x82, []byte{0x00, 0x01, 0x00})},
		{"SUBSCRIBE with reserved flags", mqttPacket(0x80, append([]byte{0x00, 0x01, 0x00}, append(mqttString("a/#"), 1)...))},
		{"second CONNECT", connect5Packet("again")},
		{"PUBLISH over the packet size limit", publish("a/b", huge)},
		{"remaining length of 128 MiB, no body", []byte{0x30, 0x80, 0x80, 0x80, 0x40}},
		{"properties length past the packet", mqttPacket(0x30, append(mqttString("a/b"), 0x7f, 1))},
	}
	// One device per case and round: a client ID connects once.
	var bad []string
	for r := range abuseRounds {
		for i := range cases {
			bad = append(bad, fmt.Sprintf("bad%d-%d", r, i))
		}
	}
	f := newFleet(t, append(flowDevices(), bad...)...)
	f.setRoutes(t, flowRoutes()...)
	core := startCore(t, f)
	fl := startFlow(t, f)
	badTLS := make([]*tls.Config, len(bad))
	for i, d := range bad {
		badTLS[i] = f.clientTLS(t, f.identity(d).tlsCertificate(t))
	}
	closedIn := make([]time.Duration, len(cases))
	fl.assertKept(t, "malformed and oversize packets", func(r int) error {
		return parallel(len(cases), len(cases), func(i int) error {
			dev := bad[r*len(cases)+i]
			c, err := rawConnect(f, badTLS[r*len(cases)+i], dev)
			if err != nil {
				return err
			}
			defer c.Close()
			start := time.Now()
			go func() { _, _ = c.Write(cases[i].data) }() // a big write may block once the core hangs up
			_ = c.SetReadDeadline(time.Now().Add(testtool.Timeout))
			_, err = io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("%s (%s): still connected after %v", dev, cases[i].name, testtool.Timeout)
			}
			closedIn[i] = max(closedIn[i], time.Since(start))
			return nil
		})
	})
	for i, c := range cases {
		t.Logf("%s: disconnected within %v", c.name, closedIn[i].Round(time.Millisecond))
	}
	if t.Failed() {
		t.Logf("core log:\n%s", core.log)
	}
}

// 1,000 devices lose their connections at once and reconnect at once:
// all are back within 5 s, and the established devices keep flowing.
func TestAbuseMassReconnect(t *testing.T) {
	const n, within = 1000, 5 * time.Second
	var many []string
	for i := range n {
		many = append(many, fmt.Sprintf("m%04d", i))
	}
	// An ECDSA server key, as a gateway serving a thousand devices would
	// pick; devices resume their TLS sessions on reconnection, as
	// well-behaved devices do.
	f := newFleetWith(t, []string{"--server-key-type", "ecp256"}, append(flowDevices(), many...)...)
	f.setRoutes(t, flowRoutes()...)
	startCore(t, f)
	cfgs := make([]*tls.Config, n)
	clients := make([]*mqtttest.Client, n)
	for i, d := range many {
		cfgs[i] = f.clientTLS(t, f.identity(d).tlsCertificate(t))
		cfgs[i].ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	connect := func(i int) error {
		cl, ca, err := mqtttest.Dial(t, f.addr(), cfgs[i], &paho.Connect{ClientID: many[i], CleanStart: true, KeepAlive: 60})
		if err != nil {
			return fmt.Errorf("%s: %w (CONNACK %s)", many[i], err, mqtttest.ConnackCode(ca))
		}
		// Reading the CONNACK has read the TLS session ticket the core
		// sent right after the handshake: the next connection resumes.
		clients[i] = cl
		return nil
	}
	start := time.Now()
	if err := parallel(n, 50, connect); err != nil {
		t.Fatalf("connecting %d devices: %v", n, err)
	}
	t.Logf("%d devices connected in %v", n, time.Since(start).Round(time.Millisecond))
	fl := startFlow(t, f)
	// Like the rates, the reconnection time is asserted on the median of
	// the rounds: every round must bring all devices back, and the median
	// one within 5 s.
	tooks := make([]time.Duration, abuseRounds)
	fl.assertKept(t, "1,000 devices reconnecting at once", func(r int) error {
		for _, c := range clients {
			c.Drop()
		}
		var resumed atomic.Int64
		start := time.Now()
		err := parallel(n, n, func(i int) error {
			if err := connect(i); err != nil {
				return err
			}
			if clients[i].Conn.ConnectionState().DidResume {
				resumed.Add(1)
			}
			return nil
		})
		tooks[r] = time.Since(start)
		t.Logf("%d devices reconnected in %v (%d resumed their TLS session)", n, tooks[r].Round(time.Millisecond), resumed.Load())
		return err
	})
	slices.Sort(tooks)
	if median := tooks[len(tooks)/2]; median > within {
		t.Errorf("%d devices took a median %v to reconnect (rounds: %v); want all back within %v", n, median.Round(time.Millisecond), tooks, within)
	}
}

// mountTmpfs mounts a tmpfs of size bytes on dir, keeping what dir held;
// it is unmounted when the test ends. Mounting needs root: without it the
// test skips, or fails under CI=true.
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	keep := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", keep).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		testtool.Unavailable(t, fmt.Sprintf("mount a tmpfs on %s: %v (needs root)", dir, err))
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if out, err := exec.Command("cp", "-a", keep+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
}

// fillDisk writes a file in dir until the file system is full.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := fh.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return path
			}
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
}

// The write directory (and so the cloud spool) is on a full disk while
// devices publish to the cloud, whose connection is cut: the core keeps
// running, the established local devices keep flowing; once space is
// freed, the spool takes messages again.
func TestAbuseSpoolDiskFull(t *testing.T) {
	f, u, cut := cloudFleet(t, flowDevices()...)
	f.setRoutes(t, append(flowRoutes(), route{"dev1", "telemetry/#", "cloud"}, route{"cloud", "commands/#", "dev2"})...)
	write := filepath.Join(f.dir, "write")
	mountTmpfs(t, write, 8<<20)
	app := connectCloudApp(t, f, u, "telemetry/#")
	core := startCore(t, f)
	if !core.log.WaitFor("connected upstream", 0, testtool.Timeout, core.exited) {
		t.Fatalf("the core did not connect upstream; its log:\n%s", core.log)
	}
	cut.cut()
	fl := startFlow(t, f)
	filler := fillDisk(t, write)
	dev1 := f.connect5(t, "dev1")
	var sent, refused int
	fl.assertKept(t, "cloud spool on a full disk", func(int) error {
		// Far more than the free space, for the whole measurement: every
		// append hits the full disk.
		payload := strings.Repeat("x", 4000)
		start := time.Now()
		for i := 0; i < 10000 && time.Since(start) < flowWindow; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
			pr, err := dev1.Paho.Publish(ctx, &paho.Publish{Topic: "telemetry/dev1/big", QoS: 1,
				Payload: fmt.Appendf(nil, "%d %d %s", sent, i, payload)})
			cancel()
			if pr == nil && err != nil {
				return fmt.Errorf("dev1: publish to the cloud: %w", err)
			}
			sent++
			if pr != nil && pr.ReasonCode >= 0x80 {
				refused++
			}
		}
		return nil
	})
	t.Logf("dev1 published %d messages to the cloud on a full disk; %d refused", sent, refused)
	select {
	case <-core.exited:
		t.Fatalf("ggcore exited with the disk full: %v\n%s", core.err, core.log)
	default:
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	dev1.MustPublish(t, "telemetry/dev1/after", "after space was freed", 1, false)
	cut.mend()
	var got []mqtttest.Message
	deadline := time.Now().Add(testtool.Timeout)
	for {
		m, ok := app.TryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("the cloud did not receive the message spooled after space was freed; got %d others\ncore log:\n%s", len(got), core.log)
		}
		if m.Payload == "after space was freed" {
			break
		}
		got = append(got, m)
	}
}
