package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// The soak: every device of the --devices fleet publishes one QoS 1
// message a second on soak/<device>/data for --soak, and the group routes
// device i's messages to device i+1 (the last to the first), so every
// message crosses the subscription table. It counts what was acknowledged
// and what arrived, and samples the broker's resident memory.

// soakSample is how often the broker's memory is read during a soak.
const soakSample = 5 * time.Second

// soakResult is what one soak measured.
type soakResult struct {
	Broker    string
	Devices   int
	Duration  time.Duration
	Published int64 // acknowledged by the broker
	Delivered int64 // distinct messages received
	Dupes     int64
	PubErrors int64
	// Start is read once every device is connected and subscribed, Peak
	// is the highest sample, End the last one before the devices leave.
	Start, Peak, End memory
	Errors           []string
}

// Lost is how many acknowledged messages never arrived.
func (r soakResult) Lost() int64 { return r.Published - r.Delivered }

// ringRoutes routes each device to the next one on soak/<device>/#.
func ringRoutes(arns map[string]string, devices []string) ([]subscription, error) {
	var out []subscription
	for i, d := range devices {
		next := devices[(i+1)%len(devices)]
		src, ok1 := arns[d]
		dst, ok2 := arns[next]
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("group.json lacks %s or %s", d, next)
		}
		out = append(out, subscription{ID: "soak-" + d, Source: src, Subject: "soak/" + d + "/#", Target: dst})
	}
	return out, nil
}

// soakReceiver is what one device received from its predecessor.
type soakReceiver struct {
	mu    sync.Mutex
	seen  map[uint64]struct{}
	dupes int64
}

// runSoak runs the soak against a started broker p.
func runSoak(ctx context.Context, p *process, name string, d dialer, devices []string, o *options, say func(string, ...any)) (soakResult, error) {
	res := soakResult{Broker: name, Devices: len(devices), Duration: o.soak}
	var total counters
	receivers := make([]*soakReceiver, len(devices))
	var delivered atomic.Int64
	clients := make([]*mqttClient, len(devices))
	defer func() {
		var live []*mqttClient
		for _, c := range clients {
			if c != nil {
				live = append(live, c)
			}
		}
		closeMany(live, o.concurrency)
	}()
	// Connect and subscribe, o.concurrency at a time.
	var next atomic.Int64
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	for range max(1, o.concurrency) {
		wg.Go(func() {
			for cctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(devices) {
					return
				}
				r := &soakReceiver{seen: map[uint64]struct{}{}}
				receivers[i] = r
				onMsg := func(pr paho.PublishReceived) (bool, error) {
					st, err := decodeStamp(pr.Packet.Payload)
					if err != nil {
						total.stray.Add(1)
						return true, nil
					}
					r.mu.Lock()
					if _, dup := r.seen[st.Seq]; dup {
						r.dupes++
					} else {
						r.seen[st.Seq] = struct{}{}
						delivered.Add(1)
					}
					r.mu.Unlock()
					return true, nil
				}
				c, err := d.connect(cctx, devices[i], clientOptions{OnMessage: onMsg, OnError: func(err error) { total.addError(err) }})
				if err == nil {
					clients[i] = c
					prev := devices[(i+len(devices)-1)%len(devices)]
					err = c.subscribe(cctx, "soak/"+prev+"/#", 1)
				}
				if err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(cctx); err != nil {
		return res, err
	}
	say("%s soak: %d devices connected and subscribed", name, len(devices))
	if err := sleep(ctx, settle); err != nil {
		return res, err
	}
	m, err := readMemory(p.PID())
	if err != nil {
		return res, err
	}
	res.Start, res.Peak = m, m

	// Publish: each device once a second, from a random phase.
	var published atomic.Int64
	pctx, stop := context.WithTimeout(ctx, o.soak)
	defer stop()
	base := time.Now()
	for i, c := range clients {
		wg.Go(func() {
			topic := "soak/" + devices[i] + "/data"
			if err := sleep(pctx, time.Duration(rand.Int64N(int64(time.Second)))); err != nil {
				return
			}
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for seq := uint64(0); ; seq++ {
				payload := stamp{Sent: time.Since(base), Pub: uint32(i), Seq: seq}.encode(o.size)
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := c.Publish(actx, &paho.Publish{Topic: topic, QoS: 1, Payload: payload})
				cancel()
				if err != nil {
					total.pubErrors.Add(1)
					total.addError(fmt.Errorf("%s: publish %d: %w", devices[i], seq, err))
				} else {
					published.Add(1)
				}
				select {
				case <-pctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	sampler := time.NewTicker(soakSample)
	defer sampler.Stop()
	lastReport := time.Now()
sampling:
	for {
		select {
		case <-pctx.Done():
			break sampling
		case <-sampler.C:
			m, err := readMemory(p.PID())
			if err != nil {
				return res, err
			}
			res.End = m
			res.Peak.RSS = max(res.Peak.RSS, m.RSS)
			res.Peak.Peak = max(res.Peak.Peak, m.Peak)
			if time.Since(lastReport) >= time.Minute {
				lastReport = time.Now()
				say("%s soak: %s in, %d published, %d delivered, VmRSS %s", name, time.Since(base).Round(time.Second),
					published.Load(), delivered.Load(), formatMiB(m.RSS))
			}
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	// The last messages: wait for them up to 30 s.
	deadline := time.Now().Add(30 * time.Second)
	for delivered.Load() < published.Load() && time.Now().Before(deadline) {
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return res, err
		}
	}
	if m, err := readMemory(p.PID()); err == nil {
		res.End = m
		res.Peak.RSS = max(res.Peak.RSS, m.RSS)
		res.Peak.Peak = max(res.Peak.Peak, m.Peak)
	}
	res.Published, res.Delivered, res.PubErrors = published.Load(), delivered.Load(), total.pubErrors.Load()
	for _, r := range receivers {
		if r != nil {
			r.mu.Lock()
			res.Dupes += r.dupes
			r.mu.Unlock()
		}
	}
	total.errMu.Lock()
	res.Errors = append(res.Errors, total.errs...)
	total.errMu.Unlock()
	return res, nil
}
