package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// The held scenario is the shape of an independent load test that once
// froze ggcore: one publisher and one subscriber per worker, each worker
// publishing all its messages at QoS 1, waiting for each PUBACK, before
// its subscriber reads anything. The subscriber holds its
// acknowledgements meanwhile (its handler blocks), so the broker must
// queue the worker's whole run for it. Worker i is held-pub<i> publishing
// on bench/held-pub<i>/data to held-sub<i>. msgs/s is deliveries over the
// time from the first publish to the last delivery; latency is not
// reported (the subscriber holds every message on purpose).

// heldScenario is the held scenario's name in the tables.
const heldScenario = "held"

// heldDevices returns the publishers and subscribers of n workers.
func heldDevices(n int) (pubs, subs []string) {
	return names("held-pub", n), names("held-sub", n)
}

// pairRoutes routes pubs[i] to subs[i] on bench/<pubs[i]>/#.
func pairRoutes(arns map[string]string, pubs, subs []string) ([]subscription, error) {
	var out []subscription
	for i := range pubs {
		r, err := meshRoutes(arns, pubs[i:i+1], subs[i:i+1])
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// runHeld runs the held scenario against one broker.
func runHeld(ctx context.Context, d dialer, brokerName string, pairs, messages, size int, timeout time.Duration,
	say func(string, ...any)) (result, error) {
	res := result{Broker: brokerName, Scenario: heldScenario, QoS: 1, Expected: int64(pairs * messages)}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pubs, subs := heldDevices(pairs)
	var total counters
	onError := func(err error) { total.addError(err) }
	var clients []*mqttClient
	release := make(chan struct{})
	released := sync.OnceFunc(func() { close(release) })
	defer func() {
		released()
		for _, c := range clients {
			c.close()
		}
	}()
	base := time.Now()
	receivers := make([]*receiver, pairs)
	releases := make([]chan struct{}, pairs)
	for i := range pairs {
		r := newReceiver(base, pairs, messages, &total)
		receivers[i] = r
		own := make(chan struct{})
		releases[i] = own
		hold := func(pr paho.PublishReceived) (bool, error) {
			select {
			case <-own:
			case <-release:
			}
			return r.onMessage(pr)
		}
		c, err := d.connect(ctx, subs[i], clientOptions{OnMessage: hold, OnError: onError})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
		if err := c.subscribe(ctx, "bench/"+pubs[i]+"/#", 1); err != nil {
			return res, err
		}
		res.TLS = c.TLS
	}
	publishers := make([]*mqttClient, pairs)
	for i := range pairs {
		c, err := d.connect(ctx, pubs[i], clientOptions{OnError: onError})
		if err != nil {
			return res, err
		}
		clients = append(clients, c)
		publishers[i] = c
	}
	res.Window = 1
	start := time.Since(base)
	var wg sync.WaitGroup
	for i, c := range publishers {
		wg.Go(func() {
			defer total.pubsDone.Add(1)
			defer close(releases[i])
			topic := "bench/" + pubs[i] + "/data"
			for seq := range uint64(messages) {
				payload := stamp{Sent: time.Since(base), Pub: uint32(i), Seq: seq}.encode(size)
				if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload}); err != nil {
					if ctx.Err() == nil {
						total.pubErrors.Add(1)
						total.addError(fmt.Errorf("%s: publish %d: %w", pubs[i], seq, err))
					}
					return
				}
			}
		})
	}
	spec := loadSpec{Broker: brokerName, Scenario: scenario{Name: heldScenario}, QoS: 1, Timeout: timeout, Drain: 3 * time.Second}
	waitDeliveries(ctx, spec, &res, &total, int64(pairs), say)
	released()
	waitPublishers(&wg, publishers)

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
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return res, err
	}
	return res, nil
}
