package broker

import (
	"errors"
	"fmt"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ggcore/ggcore/core/topic"
)

// FunctionSink takes a message the table routes to a local function
// (Target a function ARN); it must not block.
type FunctionSink func(sourceARN, targetARN, topic string, payload []byte)

// functionRouting connects local functions to the table: their
// publishes enter the broker from an inline client per function (so the
// table sees the function's ARN as Source), and messages whose target is
// a function go to the sink.
type functionRouting struct {
	mu      sync.Mutex
	sink    FunctionSink
	clients map[string]*mqtt.Client // function ARN -> inline client
}

// functionClient is the client ID a function's messages carry inside the
// broker. No device can take it: thing names cannot contain NUL.
func functionClient(arn string) string { return "\x00ggcore-function:" + arn }

// SetFunctionSink makes the broker hand messages routed to functions to
// sink (nil: they are dropped).
func (b *Broker) SetFunctionSink(sink FunctionSink) {
	b.fns.mu.Lock()
	b.fns.sink = sink
	b.fns.mu.Unlock()
}

// PublishFrom publishes a message from the local function sourceARN (a
// function of the group): the table decides which devices, functions and
// the cloud get it, exactly as for a device's publish. Local delivery is
// QoS 0, as v1's.
func (b *Broker) PublishFrom(sourceARN, topicName string, payload []byte) error {
	if err := topic.ValidName(topicName); err != nil {
		return fmt.Errorf("broker: topic %q: %w", topicName, err)
	}
	if b.cloud == nil {
		return errors.New("broker: not started")
	}
	if _, ok := b.snap.Load().functions[sourceARN]; !ok {
		return fmt.Errorf("broker: %s is not a function of the group", sourceARN)
	}
	b.fns.mu.Lock()
	if b.fns.clients == nil {
		b.fns.clients = make(map[string]*mqtt.Client)
	}
	cl := b.fns.clients[sourceARN]
	if cl == nil {
		cl = b.srv.NewClient(nil, "local", functionClient(sourceARN), true)
		b.fns.clients[sourceARN] = cl
	}
	b.fns.mu.Unlock()
	return b.srv.InjectPacket(cl, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   topicName,
		Payload:     payload,
	})
}

// toFunctions hands a publish to every function the table routes it to.
func (b *Broker) toFunctions(snap *snapshot, src *Thing, pk packets.Packet) {
	if len(snap.functions) == 0 {
		return
	}
	b.fns.mu.Lock()
	sink := b.fns.sink
	b.fns.mu.Unlock()
	var buf [4]string
	for _, t := range snap.table.Targets(src.ARN, pk.TopicName, buf[:0]) {
		if _, ok := snap.functions[t]; !ok {
			continue
		}
		if sink == nil {
			b.drops.total.Add(1)
			continue
		}
		sink(src.ARN, t, pk.TopicName, pk.Payload)
	}
}
