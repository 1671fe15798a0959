package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// scenario is who publishes and who subscribes in one run. Every
// subscriber subscribes to bench/# and receives, from each publisher of
// the scenario, what the group routes to it (all of it: see meshRoutes).
type scenario struct {
	Name        string
	Publishers  []string
	Subscribers []string
}

// scenarioNames are the scenarios ggbench knows, in report order.
var scenarioNames = []string{"fanin", "fanout", "mesh"}

// makeScenario builds a named scenario from the fleet's publishers and
// subscribers: fanin (all publishers → first subscriber), fanout (first
// publisher → all subscribers), mesh (all → all).
func makeScenario(name string, pubs, subs []string) (scenario, error) {
	switch name {
	case "fanin":
		return scenario{name, pubs, subs[:1]}, nil
	case "fanout":
		return scenario{name, pubs[:1], subs}, nil
	case "mesh":
		return scenario{name, pubs, subs}, nil
	}
	return scenario{}, fmt.Errorf("unknown scenario %q (want one of %v)", name, scenarioNames)
}

// loadSpec is one measured run.
type loadSpec struct {
	Broker   string
	Scenario scenario
	QoS      byte
	Messages int // per publisher
	Size     int // payload bytes
	// Window bounds each QoS 1 publisher's unacknowledged PUBLISHes (also
	// bounded by the broker's Receive Maximum).
	Window int
	// Timeout bounds the whole run; Drain is how long to wait for more
	// deliveries once publishers are done and deliveries have stopped.
	Timeout, Drain time.Duration
}

// result is what one run measured.
type result struct {
	Broker   string
	Scenario string
	QoS      byte
	Expected int64 // publishers × messages × subscribers
	Received int64 // deliveries, duplicates included
	Unique   int64 // distinct (publisher, sequence) per subscriber
	Stray    int64 // deliveries that were not this run's payloads
	// PubErrors counts failed PUBLISH calls (QoS 1: no or bad PUBACK).
	PubErrors int64
	// Elapsed is from the first send to the last delivery.
	Elapsed time.Duration
	Latency latencySummary
	Window  int    // effective QoS 1 window
	TLS     string // negotiated by the first client
	Errors  []string
	// BrokerCPU is the CPU time (user and system) the broker process
	// used during the run, connecting and subscribing included; 0 when
	// unknown.
	BrokerCPU time.Duration
	// LoadCPU is the CPU time ggbench itself (the load: every publisher
	// and subscriber) used during the run; 0 when unknown.
	LoadCPU time.Duration
}

// Lost is how many expected deliveries never arrived.
func (r result) Lost() int64 { return r.Expected - r.Unique }

// CPUPerDelivery is the broker's CPU time per delivery, 0 when unknown.
// It depends less than the rate on what else the machine runs.
func (r result) CPUPerDelivery() time.Duration {
	if n := r.Received - r.Stray; n > 0 {
		return r.BrokerCPU / time.Duration(n)
	}
	return 0
}

// LoadCPUPerDelivery is ggbench's own CPU time per delivery, 0 when
// unknown.
func (r result) LoadCPUPerDelivery() time.Duration {
	if n := r.Received - r.Stray; n > 0 {
		return r.LoadCPU / time.Duration(n)
	}
	return 0
}

// Duplicates is how many deliveries were repeats.
func (r result) Duplicates() int64 { return r.Received - r.Unique - r.Stray }

// Rate is deliveries per second.
func (r result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Received-r.Stray) / r.Elapsed.Seconds()
}

// receiver records what one subscriber gets.
type receiver struct {
	base     time.Time
	messages uint64
	total    *counters

	mu   sync.Mutex
	seen [][]uint64 // per publisher, a bit per sequence number
	lat  []time.Duration
}

// counters are shared by every client of a run and read for progress.
type counters struct {
	received, unique, stray, pubErrors atomic.Int64
	lastDelivery                       atomic.Int64 // ns since base
	pubsDone                           atomic.Int64
	errMu                              sync.Mutex
	errs                               []string
}

func (c *counters) addError(err error) {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if len(c.errs) < 5 {
		c.errs = append(c.errs, err.Error())
	}
}

func newReceiver(base time.Time, pubs, messages int, total *counters) *receiver {
	r := &receiver{base: base, messages: uint64(messages), total: total,
		seen: make([][]uint64, pubs), lat: make([]time.Duration, 0, pubs*messages)}
	for i := range r.seen {
		r.seen[i] = make([]uint64, (messages+63)/64)
	}
	return r
}

// onMessage is the subscriber's paho handler.
func (r *receiver) onMessage(pr paho.PublishReceived) (bool, error) {
	now := time.Since(r.base)
	r.total.received.Add(1)
	st, err := decodeStamp(pr.Packet.Payload)
	if err != nil || int(st.Pub) >= len(r.seen) || st.Seq >= r.messages {
		r.total.stray.Add(1)
		return true, nil
	}
	word, bit := st.Seq/64, uint64(1)<<(st.Seq%64)
	r.mu.Lock()
	fresh := r.seen[st.Pub][word]&bit == 0
	if fresh {
		r.seen[st.Pub][word] |= bit
		r.lat = append(r.lat, now-st.Sent)
	}
	r.mu.Unlock()
	if fresh {
		r.total.unique.Add(1)
	}
	for {
		last := r.total.lastDelivery.Load()
		if int64(now) <= last || r.total.lastDelivery.CompareAndSwap(last, int64(now)) {
			break
		}
	}
	return true, nil
}

// runLoad connects the scenario's clients to the broker, publishes, waits
// for the deliveries, and disconnects everything.
func runLoad(ctx context.Context, d dialer, spec loadSpec, say func(string, ...any)) (result, error) {
	sc := spec.Scenario
	res := result{
		Broker: spec.Broker, Scenario: sc.Name, QoS: spec.QoS,
		Expected: int64(len(sc.Publishers) * spec.Messages * len(sc.Subscribers)),
	}
	ctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()

	var total counters
	onError := func(err error) { total.addError(err) }
	var clients []*mqttClient
	defer func() {
		for _, c := range clients {
			c.close()
		}
	}()

	// base is the zero of every stamp and delivery time of the run.
	base := time.Now()
	receivers := make([]*receiver, len(sc.Subscribers))
	for i, name := range sc.Subscribers {
		receivers[i] = newReceiver(base, len(sc.Publishers), spec.Messages, &total)
		c, err := d.connect(ctx, name, clientOptions{OnMessage: receivers[i].onMessage, OnError: onError})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
		if err := c.subscribe(ctx, "bench/#", spec.QoS); err != nil {
			return res, err
		}
		res.TLS = c.TLS
	}
	pubs := make([]*mqttClient, len(sc.Publishers))
	res.Window = spec.Window
	for i, name := range sc.Publishers {
		c, err := d.connect(ctx, name, clientOptions{OnError: onError})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
		pubs[i] = c
		res.Window = min(res.Window, int(c.ServerReceiveMaximum))
	}

	// Throughput is timed from here, the moment publishers are released.
	start := time.Since(base)
	pubCtx, stopPubs := context.WithCancel(ctx)
	defer stopPubs()
	var wg sync.WaitGroup
	for i, c := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer total.pubsDone.Add(1)
			publishAll(pubCtx, c, uint32(i), sc.Publishers[i], spec, res.Window, base, &total)
		}()
	}

	waitDeliveries(ctx, spec, &res, &total, int64(len(pubs)), say)
	stopPubs()
	waitPublishers(&wg, pubs)

	res.Received = total.received.Load()
	res.Unique = total.unique.Load()
	res.Stray = total.stray.Load()
	res.PubErrors = total.pubErrors.Load()
	if last := time.Duration(total.lastDelivery.Load()); last > start {
		res.Elapsed = last - start
	}
	total.errMu.Lock()
	res.Errors = slices.Clone(total.errs)
	total.errMu.Unlock()
	var lat []time.Duration
	for _, r := range receivers {
		r.mu.Lock()
		lat = append(lat, r.lat...)
		r.mu.Unlock()
	}
	res.Latency = summarize(lat)
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	return res, nil
}

// waitDeliveries returns when every expected delivery has arrived, when
// publishers are done and nothing arrived for spec.Drain, or when ctx
// ends (timeout or interrupt). It reports progress every two seconds.
func waitDeliveries(ctx context.Context, spec loadSpec, res *result, total *counters, pubs int64, say func(string, ...any)) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	lastReport := start
	lastCount, lastChange := int64(0), start
	label := fmt.Sprintf("%s %s QoS %d", spec.Broker, spec.Scenario.Name, spec.QoS)
	for {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				say("%s: timed out after %s", label, spec.Timeout)
			}
			return
		case now := <-tick.C:
			n := total.unique.Load()
			if n >= res.Expected {
				return
			}
			if n != lastCount {
				lastCount, lastChange = n, now
			}
			if total.pubsDone.Load() == pubs && now.Sub(lastChange) > spec.Drain {
				say("%s: no delivery for %s after the last publish; %d of %d missing", label, spec.Drain, res.Expected-n, res.Expected)
				return
			}
			if now.Sub(lastReport) >= 2*time.Second {
				lastReport = now
				say("%s: %d/%d delivered (%.0f%%), %.0f msgs/s", label, n, res.Expected,
					100*float64(n)/float64(res.Expected), float64(n)/now.Sub(start).Seconds())
			}
		}
	}
}

// waitPublishers waits for the publisher goroutines. A publisher blocked
// writing to a broker that stopped reading does not see its context end,
// so after a grace period the publishers' connections are closed.
func waitPublishers(wg *sync.WaitGroup, pubs []*mqttClient) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(5 * time.Second):
	}
	for _, c := range pubs {
		c.abort()
	}
	<-done
}

// publishAll sends spec.Messages stamped messages on bench/<name>/data:
// back to back at QoS 0; at QoS 1 with up to window PUBLISHes awaiting
// their PUBACK.
func publishAll(ctx context.Context, c *mqttClient, pub uint32, name string, spec loadSpec, window int, base time.Time, total *counters) {
	topic := "bench/" + name + "/data"
	var next atomic.Uint64
	send := func() {
		for ctx.Err() == nil {
			seq := next.Add(1) - 1
			if seq >= uint64(spec.Messages) {
				return
			}
			payload := stamp{Sent: time.Since(base), Pub: pub, Seq: seq}.encode(spec.Size)
			if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: spec.QoS, Payload: payload}); err != nil {
				if ctx.Err() == nil {
					total.pubErrors.Add(1)
					total.addError(fmt.Errorf("%s: publish: %w", name, err))
				}
				if spec.QoS == 0 {
					return // a QoS 0 write error means the connection is gone
				}
			}
		}
	}
	if spec.QoS == 0 {
		send()
		return
	}
	var wg sync.WaitGroup
	for range max(1, window) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send()
		}()
	}
	wg.Wait()
}
