package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/ggcore/ggcore/internal/testtool"
)

// Flow control, in the shape of an independent load tool's test (one
// publisher and one subscriber connection per worker, ten workers): each
// worker publishes all its messages, waiting for each acknowledgement,
// before its subscriber reads anything; the subscriber holds its
// acknowledgements meanwhile, so the broker must queue everything for
// it. Every message must arrive, in order, and a subscriber that never
// reads must not slow the other pairs down.

const heldPairs = 10

func heldMessages() int {
	if testing.Short() {
		return 1000
	}
	return 10000
}

// heldLib is an MQTT client library driven by the flow tests.
type heldLib struct {
	name string
	// subscribe connects dev and subscribes to topic at qos. Every
	// message's payload is passed to each, in order, on the client's
	// receiving goroutine: while each blocks, the client reads and
	// acknowledges nothing more.
	subscribe func(t *testing.T, f *fleet, dev, topic string, qos byte, each func([]byte))
	// publisher connects dev; publish returns once the message is sent
	// (QoS 0) or acknowledged (QoS 1, 2).
	publisher func(t *testing.T, f *fleet, dev string) (publish func(topic string, payload []byte, qos byte) error)
}

var heldLibs = []heldLib{
	{
		name: "paho.mqtt.golang (MQTT 3.1.1)",
		subscribe: func(t *testing.T, f *fleet, dev, topic string, qos byte, each func([]byte)) {
			c := connectV3(t, f, dev)
			tok := c.Subscribe(topic, qos, func(_ pahov3.Client, m pahov3.Message) { each(m.Payload()) })
			if !tok.WaitTimeout(testtool.Timeout) || tok.Error() != nil {
				t.Fatalf("%s: subscribe %s: %v", dev, topic, tok.Error())
			}
		},
		publisher: func(t *testing.T, f *fleet, dev string) func(string, []byte, byte) error {
			c := connectV3(t, f, dev)
			return func(topic string, payload []byte, qos byte) error {
				tok := c.Publish(topic, qos, false, payload)
				if !tok.WaitTimeout(testtool.Timeout) {
					return fmt.Errorf("%s: publish: no acknowledgement within %v", dev, testtool.Timeout)
				}
				return tok.Error()
			}
		},
	},
	{
		name: "paho.golang (MQTT 5)",
		subscribe: func(t *testing.T, f *fleet, dev, topic string, qos byte, each func([]byte)) {
			// A long keepalive: a client holding its messages does not read
			// PINGRESPs either.
			c, _, err := f.dial5With(t, f.clientTLS(t, f.identity(dev).tlsCertificate(t)),
				&paho.Connect{ClientID: dev, CleanStart: true, KeepAlive: 600})
			if err != nil {
				t.Fatalf("%s: connect: %v", dev, err)
			}
			c.Discard()
			c.Paho.AddOnPublishReceived(func(r paho.PublishReceived) (bool, error) {
				each(r.Packet.Payload)
				return true, nil
			})
			c.MustSubscribe(t, qos, topic)
		},
		publisher: func(t *testing.T, f *fleet, dev string) func(string, []byte, byte) error {
			c := f.connect5(t, dev)
			return func(topic string, payload []byte, qos byte) error {
				ctx, cancel := context.WithTimeout(context.Background(), testtool.Timeout)
				defer cancel()
				_, err := c.Paho.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
				return err
			}
		},
	},
}

// connectV3 connects dev with paho.mqtt.golang over mutual TLS, as MQTT
// 3.1.1 with a clean session; it is disconnected when the test ends.
func connectV3(t *testing.T, f *fleet, dev string) pahov3.Client {
	t.Helper()
	o := pahov3.NewClientOptions().AddBroker("tls://" + f.addr()).SetClientID(dev).
		SetTLSConfig(f.clientTLS(t, f.identity(dev).tlsCertificate(t))).
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetOrderMatters(true).SetWriteTimeout(testtool.Timeout).
		// A long keepalive: a client holding its messages does not read
		// PINGRESPs either.
		SetKeepAlive(600 * time.Second)
	c := pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(testtool.Timeout) || tok.Error() != nil {
		t.Fatalf("%s: connect: %v", dev, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// heldPair is one worker's result.
type heldPair struct {
	got, outOfOrder atomic.Int64
	done            chan struct{} // closed when every message arrived
	elapsed         time.Duration // first publish to last message
}

// runHeldPairs runs one worker per pair of devices (pubs[i] publishing to
// subs[i] on flow/<prefix>/<i>) in the held-acknowledgements shape, and
// returns once every subscriber not in stalled has every message. A
// stalled subscriber holds its first message for ever.
func runHeldPairs(t *testing.T, f *fleet, lib heldLib, prefix string, qos byte, n int, stalled map[int]bool) []*heldPair {
	t.Helper()
	pairs := make([]*heldPair, heldPairs)
	publishers := make([]func(string, []byte, byte) error, heldPairs)
	releases := make([]chan struct{}, heldPairs)
	forever := make(chan struct{})
	t.Cleanup(func() { close(forever) })
	for i := range pairs {
		p := &heldPair{done: make(chan struct{})}
		pairs[i] = p
		release := make(chan struct{})
		releases[i] = release
		if stalled[i] {
			release = forever
		}
		lib.subscribe(t, f, fmt.Sprintf("%s-sub%d", prefix, i), fmt.Sprintf("flow/%s/%d", prefix, i), qos, func(b []byte) {
			<-release
			if len(b) != 8 || int64(binary.BigEndian.Uint64(b)) != p.got.Load() {
				p.outOfOrder.Add(1)
			}
			if p.got.Add(1) == int64(n) {
				close(p.done)
			}
		})
		publishers[i] = lib.publisher(t, f, fmt.Sprintf("%s-pub%d", prefix, i))
	}
	var wg sync.WaitGroup
	for i, p := range pairs {
		wg.Go(func() {
			start := time.Now()
			topic := fmt.Sprintf("flow/%s/%d", prefix, i)
			for k := 0; k < n; k++ {
				if err := publishers[i](topic, binary.BigEndian.AppendUint64(nil, uint64(k)), qos); err != nil {
					t.Errorf("pair %d: message %d: %v", i, k, err)
					return
				}
			}
			close(releases[i])
			if stalled[i] {
				return
			}
			select {
			case <-p.done:
				p.elapsed = time.Since(start)
			case <-time.After(4 * testtool.Timeout):
				t.Errorf("pair %d: %d of %d messages after %v", i, p.got.Load(), n, time.Since(start))
			}
		})
	}
	wg.Wait()
	for i, p := range pairs {
		if !stalled[i] && p.outOfOrder.Load() != 0 {
			t.Errorf("pair %d: %d messages out of order", i, p.outOfOrder.Load())
		}
	}
	return pairs
}

// heldFleet provisions the devices of the given worker runs (prefix-pubI,
// prefix-subI), routes each pair, and starts the core.
func heldFleet(t *testing.T, prefixes ...string) *fleet {
	t.Helper()
	var devs []string
	var routes []route
	for _, p := range prefixes {
		for i := 0; i < heldPairs; i++ {
			pub, sub := fmt.Sprintf("%s-pub%d", p, i), fmt.Sprintf("%s-sub%d", p, i)
			devs = append(devs, pub, sub)
			routes = append(routes, route{pub, fmt.Sprintf("flow/%s/%d", p, i), sub})
		}
	}
	f := newFleet(t, devs...)
	f.setRoutes(t, routes...)
	startCore(t, f)
	return f
}

// TestFlowHeldAcknowledgements: 10 pairs x 10,000 messages, QoS 0, 1 and
// 2, with each of the two client libraries: all delivered, in order.
func TestFlowHeldAcknowledgements(t *testing.T) {
	var prefixes []string
	for l := range heldLibs {
		for qos := 0; qos <= 2; qos++ {
			prefixes = append(prefixes, fmt.Sprintf("h%d%d", l, qos))
		}
	}
	f := heldFleet(t, prefixes...)
	n := heldMessages()
	for l, lib := range heldLibs {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%s QoS %d", lib.name, qos), func(t *testing.T) {
				start := time.Now()
				runHeldPairs(t, f, lib, fmt.Sprintf("h%d%d", l, qos), qos, n, nil)
				t.Logf("%d x %d messages in %v (%.0f msgs/s)", heldPairs, n, time.Since(start),
					float64(heldPairs*n)/time.Since(start).Seconds())
			})
		}
	}
}

// TestFlowStalledSubscriber: with one subscriber that never reads, the
// other nine pairs keep flowing. Head-of-line blocking, the failure this
// guards against, takes them to almost nothing; so the test fails below
// half their rate without it. The target is 80%: the ratio is
// logged, but on a loaded 2-core CI machine the rates of two identical
// runs differ by more than 20%, so that bound is measured, not asserted.
func TestFlowStalledSubscriber(t *testing.T) {
	f := heldFleet(t, "ra", "rb", "rc", "rd", "re", "rf")
	lib := heldLibs[0]
	n := heldMessages()
	rate := func(prefix string, stalled map[int]bool) float64 {
		pairs := runHeldPairs(t, f, lib, prefix, 1, n, stalled)
		var sum float64
		for i := 0; i < heldPairs-1; i++ {
			sum += float64(n) / pairs[i].elapsed.Seconds()
		}
		return sum / (heldPairs - 1)
	}
	// The machine is shared: a rate is compared with the mean of one
	// measured just before and one just after it; one retry.
	for attempt, p := range [][3]string{{"ra", "rb", "rc"}, {"rd", "re", "rf"}} {
		before := rate(p[0], nil)
		with := rate(p[1], map[int]bool{heldPairs - 1: true})
		after := rate(p[2], nil)
		if t.Failed() {
			return
		}
		base := (before + after) / 2
		t.Logf("attempt %d: nine pairs at %.0f msgs/s each with a stalled tenth subscriber, %.0f without (%.0f before, %.0f after)",
			attempt+1, with, base, before, after)
		if with >= 0.5*base {
			return
		}
	}
	t.Fatal("a subscriber that never reads slowed the other pairs to less than half their rate")
}
