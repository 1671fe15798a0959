package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/internal/testtool/mqtttest"
)

// kill ends the core with SIGKILL, as a power cut would: no shutdown code
// runs.
func (c *coreProc) kill(t *testing.T) {
	t.Helper()
	c.stopped = true
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatalf("SIGKILL ggcore: %v", err)
	}
	select {
	case <-c.exited:
	case <-time.After(stopTimeout):
		t.Fatalf("ggcore still running %v after SIGKILL", stopTimeout)
	}
}

// storePath is the broker's session store in the fleet's write directory.
func (f *fleet) storePath() string { return filepath.Join(f.dir, "write", "broker", "sessions.db") }

// connectSession connects dev with a persistent MQTT 5 session (expiry
// 300 s), resuming the stored one unless clean; it returns whether the
// CONNACK said a session was present.
func (f *fleet) connectSession(t *testing.T, dev string, clean bool) (*mqtttest.Client, bool) {
	t.Helper()
	expiry := uint32(300)
	cl, ca, err := f.dial5With(t, f.clientTLS(t, f.identity(dev).tlsCertificate(t)), &paho.Connect{
		ClientID: dev, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
	if err != nil {
		t.Fatalf("%s connect (clean start %t): %v (CONNACK %s)", dev, clean, err, mqtttest.ConnackCode(ca))
	}
	return cl, ca.SessionPresent
}

// received waits until every payload in want has arrived on cl (then
// Settle longer, for duplicates) and returns how often each arrived and
// the order of first arrivals.
func received(t *testing.T, cl *mqtttest.Client, want []string) (map[string]int, []string) {
	t.Helper()
	counts := map[string]int{}
	var order []string
	missing := len(want)
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	deadline := time.Now().Add(testtool.Timeout)
	for missing > 0 {
		m, ok := cl.TryNext(time.Until(deadline))
		if !ok {
			t.Fatalf("%s: %d of %d messages not delivered within %v; received %v", cl.Name(), missing, len(want), testtool.Timeout, order)
		}
		if counts[m.Payload] == 0 {
			order = append(order, m.Payload)
			if wanted[m.Payload] {
				missing--
			}
		}
		counts[m.Payload]++
	}
	for {
		m, ok := cl.TryNext(testtool.Settle)
		if !ok {
			return counts, order
		}
		if counts[m.Payload] == 0 {
			order = append(order, m.Payload)
		}
		counts[m.Payload]++
	}
}

// Queued QoS 1 and QoS 2 messages of an offline persistent device, its
// subscriptions and a retained message survive SIGKILL; on its return the
// device gets every message, in order, QoS 2 exactly once. A second
// SIGKILL, with the subscription table changed before the restart: the
// queued messages the table no longer routes are not delivered.
func TestSessionsSurviveSIGKILL(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2", "dev3")
	f.setRoutes(t, route{"dev1", "a/#", "dev2"}, route{"dev1", "b/#", "dev2"}, route{"dev1", "r/#", "dev3"})
	core := startCore(t, f)

	dev2, _ := f.connectSession(t, "dev2", true)
	dev2.MustSubscribe(t, 2, "a/#", "b/#")
	dev2.Disconnect()

	dev1 := f.connect5(t, "dev1")
	const n = 40
	var want []string
	for i := range n {
		qos := byte(1 + i%2)
		p := fmt.Sprintf("q%d-%02d", qos, i)
		dev1.MustPublish(t, "a/x", p, qos, false)
		want = append(want, p)
	}
	dev1.MustPublish(t, "r/x", "retained before the kill", 1, true)
	core.kill(t)

	core = startCore(t, f)
	if !strings.Contains(core.log.String(), "session store opened") {
		t.Errorf("no `session store opened` line after restart:\n%s", core.log)
	}
	dev2, present := f.connectSession(t, "dev2", false)
	if !present {
		t.Errorf("dev2: CONNACK session present = false after SIGKILL; want its stored session")
	}
	counts, order := received(t, dev2, want)
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Errorf("dev2 received %v; want every queued message in the order published: %v", order, want)
	}
	for p, c := range counts {
		if strings.HasPrefix(p, "q2-") && c != 1 {
			t.Errorf("dev2 received QoS 2 message %s %d times; want exactly once", p, c)
		}
	}
	dev3 := f.connect5(t, "dev3")
	dev3.MustSubscribe(t, 1, "r/#")
	if m := dev3.Next(t); m.Payload != "retained before the kill" || !m.Retain {
		t.Errorf("dev3 received %v; want the retained message stored before the kill, with the retain flag", m)
	}

	// The session's subscriptions survived too: queue more, kill again,
	// and restart with a table that no longer routes a/#.
	dev2.Disconnect()
	dev1 = f.connect5(t, "dev1")
	dev1.MustPublish(t, "a/x", "a, unrouted after the restart", 1, false)
	dev1.MustPublish(t, "b/x", "b, still routed", 1, false)
	core.kill(t)
	f.setRoutes(t, route{"dev1", "b/#", "dev2"})
	startCore(t, f)
	dev2, _ = f.connectSession(t, "dev2", false)
	dev1 = f.connect5(t, "dev1")
	dev1.MustPublish(t, "a/x", "a, live, unrouted", 1, false)
	dev1.MustPublish(t, "b/x", "control", 1, false)
	_, order = received(t, dev2, []string{"b, still routed", "control"})
	if strings.Join(order, " | ") != "b, still routed | control" {
		t.Errorf("dev2 received %v; want only the b/# messages the current table routes", order)
	}
	// Nothing targets dev3 on r/# any more: the restored retained message
	// is not replayed to it.
	dev3 = f.connect5(t, "dev3")
	if codes := dev3.Subscribe(t, 1, "r/#"); codes[0] < 0x80 {
		dev3.ExpectNothing(t, testtool.Settle)
	}
}

// A persistent device that is connected but holds its acknowledgements
// has, beyond its window, messages waiting in the broker's queue for it;
// once it drops off, more wait there for its return. Every one was
// acknowledged to its publisher, so SIGKILL must lose none: the device
// resumes its session and gets every message, in order per publisher,
// QoS 2 exactly once.
func TestConnectedSessionQueueSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1", "dev2", "dev3")
	f.setRoutes(t, route{"dev1", "a/#", "dev3"}, route{"dev2", "a/#", "dev3"})
	core := startCore(t, f)

	expiry, window := uint32(300), uint16(4)
	holder, ca, err := f.dial5With(t, f.clientTLS(t, f.identity("dev3").tlsCertificate(t)), &paho.Connect{
		ClientID: "dev3", CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &window},
	})
	if err != nil {
		t.Fatalf("dev3 connect: %v (CONNACK %s)", err, mqtttest.ConnackCode(ca))
	}
	release := make(chan struct{})
	holder.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) { <-release; return true, nil })
	t.Cleanup(func() { close(release) })
	holder.MustSubscribe(t, 2, "a/#")

	pubs := []*mqtttest.Client{f.connect5(t, "dev1"), f.connect5(t, "dev2")}
	var want [2][]string
	publish := func(phase string, n int) {
		for i := range n {
			for j, p := range pubs {
				m := fmt.Sprintf("dev%d %s %03d", j+1, phase, i)
				p.MustPublish(t, "a/x", m, byte(1+i%2), false)
				want[j] = append(want[j], m)
			}
		}
	}
	// The device takes 4, the rest wait in its queue.
	publish("held", 40)
	// Then it loses its network (the broker notices when it reads EOF).
	holder.Drop()
	publish("dropped", 10)
	core.kill(t)

	startCore(t, f)
	dev3, present := f.connectSession(t, "dev3", false)
	if !present {
		t.Errorf("dev3: CONNACK session present = false after SIGKILL; want its stored session")
	}
	all := append(append([]string(nil), want[0]...), want[1]...)
	counts, order := received(t, dev3, all)
	for j := range want {
		var got []string
		for _, p := range order {
			if strings.HasPrefix(p, fmt.Sprintf("dev%d ", j+1)) {
				got = append(got, p)
			}
		}
		if strings.Join(got, ",") != strings.Join(want[j], ",") {
			t.Errorf("dev%d's messages reached dev3 as\n%q\nwant every one, in the order published:\n%q", j+1, got, want[j])
		}
	}
	for p, c := range counts {
		if c != 1 && qosOf(p) == 2 {
			t.Errorf("dev3 received QoS 2 message %q %d times; want exactly once", p, c)
		}
	}
}

// qosOf is the QoS TestConnectedSessionQueueSurvivesSIGKILL published
// payload p with: 1 for even sequence numbers, 2 for odd ones.
func qosOf(p string) byte {
	var n int
	fmt.Sscanf(p[strings.LastIndexByte(p, ' ')+1:], "%d", &n)
	return byte(1 + n%2)
}

// A session store that cannot be read whole stops the core with a message
// that names the file and what to do; it never starts half-loaded.
func TestCorruptSessionStoreRefused(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "dev1")
	if err := os.MkdirAll(filepath.Dir(f.storePath()), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.storePath(), []byte(strings.Repeat("not a session store\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := runCoreToExit(t, f)
	if code == 0 {
		t.Fatalf("ggcore exited 0 with a corrupt session store:\n%s", out)
	}
	for _, want := range []string{f.storePath(), "move the file away"} {
		if !strings.Contains(out, want) {
			t.Errorf("ggcore's refusal does not say %q:\n%s", want, out)
		}
	}
}
