package iotbroker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/ggcore/ggcore/internal/testtool"
)

// benchPolicies are a core's and a cloud client's policies as an
// operator would write them: the Minimal AWS IoT Policy of a core plus
// the statements for the brokered topics.
var benchPolicies = map[string]string{
	"core": strings.Join([]string{
		allow("iot:Connect", "*"),
		allow("iot:Publish iot:Subscribe iot:Receive", "topicfilter/$aws/things/core-name-*", "topic/$aws/things/core-name-*"),
		allow("iot:GetThingShadow iot:UpdateThingShadow iot:DeleteThingShadow", "thing/core-name-*"),
		allow("greengrass:AssumeRoleForGroup greengrass:CreateCertificate", "*"),
		allow("iot:Publish", "topic/bench/${iot:Connection.Thing.ThingName}/*"),
		allow("iot:Subscribe", "topicfilter/commands/${iot:Connection.Thing.ThingName}/#"),
		allow("iot:Receive", "topic/commands/${iot:Connection.Thing.ThingName}/*"),
		deny("iot:Publish", "topic/bench/core/forbidden"),
	}, ","),
	"cloud": strings.Join([]string{
		connectSelf,
		allow("iot:Subscribe", "topicfilter/bench/#"),
		allow("iot:Receive", "topic/bench/*"),
		allow("iot:Publish", "topic/commands/*"),
	}, ","),
}

// BenchmarkThroughputQoS1 measures messages per second from one
// publisher to one subscriber at QoS 1, 256-byte payloads, with the
// policy checks on (policies reused for DefaultPolicyTTL, or read again
// at every check) and off (the baseline: same broker, hooks, TLS).
func BenchmarkThroughputQoS1(b *testing.B) {
	for _, c := range []struct {
		name    string
		enforce bool
		ttl     time.Duration
	}{
		{"checks=off", false, 0},
		{"checks=on", true, 0},
		{"checks=on,reread=always", true, -1},
	} {
		b.Run(c.name, func(b *testing.B) { benchThroughput(b, c.enforce, c.ttl) })
	}
}

func benchThroughput(b *testing.B, enforce bool, ttl time.Duration) {
	e := newEnv(b)
	e.checksOff = !enforce
	core, cloud := e.thing("core", benchPolicies["core"]), e.thing("cloud", benchPolicies["cloud"])
	e.start(ttl)
	sub := e.mustConnect5(cloud)
	var received atomic.Int64
	done := make(chan struct{})
	target := int64(b.N)
	sub.Discard()
	sub.Paho.AddOnPublishReceived(func(paho.PublishReceived) (bool, error) {
		if received.Add(1) == target {
			close(done)
		}
		return true, nil
	})
	if codes := sub.Subscribe(b, 1, "bench/#"); codes[0] != 1 {
		b.Fatalf("SUBACK %x", codes)
	}
	pub := e.mustConnect5(core)
	payload := make([]byte, 256)

	// A window of concurrent QoS 1 publishes, as a bridge keeps.
	const window = 32
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range window {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= target {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := pub.Paho.Publish(ctx, &paho.Publish{Topic: "bench/core/t", QoS: 1, Payload: payload})
				cancel()
				if err != nil || r.ReasonCode != 0 {
					failed.Store(fmt.Sprint("publish: ", err, r))
					return
				}
			}
		}()
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		b.Fatal(f)
	}
	select {
	case <-done:
	case <-time.After(testtool.Timeout):
		b.Fatalf("received %d of %d messages within %v", received.Load(), target, testtool.Timeout)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkCheck is the cost of one authorization decision (iot:Receive
// on a topic, the per-message check) with the policies reused, and with
// the policies read again from the store each time.
func BenchmarkCheck(b *testing.B) {
	for _, c := range []struct {
		name string
		ttl  time.Duration
	}{{"reuse", time.Hour}, {"reread", -1}} {
		b.Run(c.name, func(b *testing.B) {
			e := newEnv(b)
			core := e.thing("core", benchPolicies["core"])
			e.start(c.ttl)
			e.mustConnect5(core)
			s := e.broker.session("core")
			resource := e.broker.topicARN("commands/core/1")
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if !s.allow(actionReceive, resource) {
					b.Fatal("refused")
				}
			}
		})
	}
}
