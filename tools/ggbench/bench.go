package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// bench runs every measurement and returns the report.
func bench(ctx context.Context, o *options, say func(string, ...any)) (rep report, err error) {
	raiseFileLimit(say)
	work, err := os.MkdirTemp("", "ggbench-")
	if err != nil {
		return rep, err
	}
	if o.keep {
		say("work directory: %s (kept)", work)
	} else {
		defer os.RemoveAll(work)
	}
	if err := buildTools(ctx, o, work, say); err != nil {
		return rep, err
	}

	pubs, subs := names("pub", o.pubs), names("sub", o.subs)
	heldPubs, heldSubs := heldDevices(o.heldPairs)
	port, err := freePort()
	if err != nil {
		return rep, err
	}
	say("provisioning %d publishers and %d subscribers, and %d held-scenario pairs", o.pubs, o.subs, o.heldPairs)
	devices := slices.Concat(pubs, subs, heldPubs, heldSubs)
	f, err := provision(ctx, o.ggprov, filepath.Join(work, "fleet"), port, "ecp256", devices)
	if err != nil {
		return rep, err
	}
	if err := f.route(func(arns map[string]string) ([]subscription, error) {
		mesh, err := meshRoutes(arns, pubs, subs)
		if err != nil {
			return nil, err
		}
		held, err := pairRoutes(arns, heldPubs, heldSubs)
		return append(mesh, held...), err
	}); err != nil {
		return rep, err
	}
	tlsFor, err := f.clientTLS()
	if err != nil {
		return rep, err
	}

	rep.Notes = append(rep.Notes,
		"command: ggbench "+strings.Join(os.Args[1:], " "),
		fmt.Sprintf("%s, %s/%s, %d CPUs, %s, load average at start %s", time.Now().UTC().Format(time.RFC3339),
			runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), loadAverage()),
		fmt.Sprintf("baseline: %s, max_queued_messages %d, set_tcp_nodelay true, other settings default", mosquittoVersion(ctx, o.mosquitto), mosquittoQueue),
		fmt.Sprintf("load: %d publishers, %d subscribers, %d messages of %d bytes per publisher and run; QoS 1 window %d per publisher",
			o.pubs, o.subs, o.messages, o.size, o.window),
		fmt.Sprintf("each scenario and QoS ran %d times per broker, the brokers taking turns; a row is the run with the median msgs/s (all its figures from that run)", o.rounds),
		"fanin: all publishers to sub0; fanout: pub0 to all subscribers; mesh: all to all. msgs/s = deliveries / (last delivery - first send); latency is send to delivery",
		"QoS 0 publishers send back to back with no flow control, so QoS 0 latency is mostly queueing in the broker; a broker that bounds its queues drops instead (lost)",
		fmt.Sprintf("ggcore binary measured: %s (%s)", o.ggcore, describeBuild(o.ggcore)),
		"mochi: ggcore's engine (mochi-mqtt/server v2) bare, same TLS listener, profile, certificates and limits, no identity/routing/queueing hooks (see tools/ggbench/mochi.go)",
	)
	if o.heldPairs > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("held: %d workers, each publishing %d QoS 1 messages of %d bytes one at a time (waiting for each PUBACK) "+
			"while its own subscriber holds its acknowledgements until the publisher is done: the broker must queue every worker's run", o.heldPairs, o.heldMessages, o.size))
	}

	results, notes, err := benchLoad(ctx, o, f, tlsFor, pubs, subs, work, say)
	rep.Results = results
	rep.Notes = append(rep.Notes, notes...)
	if err != nil {
		return rep, err
	}

	rep.Notes = append(rep.Notes, "load average after the load runs "+loadAverage()+
		" (ggbench shares the machine with the brokers; other work running at the same time skews the figures)")
	if o.devices > 0 {
		rows, soaks, err := benchMemory(ctx, o, work, say)
		rep.Memory, rep.Soak = rows, soaks
		if err != nil {
			return rep, err
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("memory: a fleet of %d devices (EC P-256 keys), connected %d handshakes at a time with mutual TLS, no subscriptions; read %s after the last connection",
			o.devices, o.concurrency, settle))
		if len(soaks) > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("soak: the %d devices each publish one QoS 1 message of %d bytes a second for %s, routed device i → device i+1 by the subscription table; "+
				"memory sampled every %s from the moment all are connected and subscribed (start) to the end (end)", o.devices, o.size, o.soak, soakSample))
		}
	}
	return rep, nil
}

// startBroker starts the named broker for fleet f; tag names its files
// in the work directory.
func startBroker(ctx context.Context, o *options, name string, f *fleet, work, tag string) (*process, error) {
	switch name {
	case "ggcore":
		return startGGCore(ctx, o.ggcore, f, work, tag)
	case "mochi":
		return startMochi(ctx, f, work, tag)
	}
	return startMosquitto(ctx, o.mosquitto, f, work, tag)
}

// brokerRun is one broker under load and what it measured.
type brokerRun struct {
	name    string
	p       *process
	d       dialer
	results []result
	// lostNotes name the rounds that lost deliveries, whichever run
	// results reports.
	lostNotes []string
}

// medianRun is the run with the median rate of rs (the lower middle one
// of an even count): one run's figures, not a mix of several.
func medianRun(rs []result) result {
	sorted := slices.Clone(rs)
	slices.SortStableFunc(sorted, func(a, b result) int { return cmp.Compare(a.Rate(), b.Rate()) })
	return sorted[(len(sorted)-1)/2]
}

// lostNote says which of rs lost deliveries and how many; "" if none did.
func lostNote(rs []result) string {
	var parts []string
	for i, r := range rs {
		if r.Lost() > 0 {
			parts = append(parts, fmt.Sprintf("round %d lost %s", i+1, formatLost(r.Lost(), r.Expected)))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return fmt.Sprintf("%s %s QoS %d: %s", rs[0].Broker, rs[0].Scenario, rs[0].QoS, strings.Join(parts, ", "))
}

// benchLoad starts every broker, then runs each scenario and QoS against
// each broker in turn, o.rounds times, so that all see the same background
// load of the machine, and stops them. Each broker's row is its run with
// the median rate (medianRun); a loss in any round is noted. Results come
// back broker by broker.
func benchLoad(ctx context.Context, o *options, f *fleet, tlsFor func(string) (*tls.Config, error),
	pubs, subs []string, work string, say func(string, ...any)) (results []result, notes []string, err error) {
	runs := make([]*brokerRun, 0, len(o.brokers))
	defer func() {
		for _, r := range runs {
			if stopErr := r.p.stop(); stopErr != nil && err == nil && ctx.Err() == nil {
				err = stopErr
			}
		}
	}()
	for _, name := range o.brokers {
		say("starting %s", name)
		p, err := startBroker(ctx, o, name, f, work, name)
		if err != nil {
			return nil, nil, err
		}
		runs = append(runs, &brokerRun{name: name, p: p, d: dialer{addr: p.addr, tlsFor: tlsFor}})
	}

	for _, scName := range o.scenarios {
		sc, err := makeScenario(scName, pubs, subs)
		if err != nil {
			return nil, nil, err
		}
		for _, q := range o.qos {
			qos, _ := strconv.Atoi(q)
			rounds := make([][]result, len(runs))
			for round := 1; round <= o.rounds; round++ {
				for i, r := range runs {
					spec := loadSpec{Broker: r.name, Scenario: sc, QoS: byte(qos), Messages: o.messages, Size: o.size,
						Window: o.window, Timeout: o.timeout, Drain: o.drain}
					say("%s %s QoS %d, round %d of %d: %d → %d, %d messages per publisher", r.name, sc.Name, qos, round, o.rounds,
						len(sc.Publishers), len(sc.Subscribers), o.messages)
					res, err := withCPU(r.p, func() (result, error) { return runLoad(ctx, r.d, spec, say) })
					if err != nil {
						return nil, nil, fmt.Errorf("%s %s QoS %d: %w", r.name, sc.Name, qos, err)
					}
					if r.p.exited() {
						return nil, nil, r.p.exitError()
					}
					say("%s %s QoS %d: %.0f msgs/s, p50 %s, p99 %s, lost %s", r.name, sc.Name, qos, res.Rate(),
						formatLatency(res.Latency.P50), formatLatency(res.Latency.P99), formatLost(res.Lost(), res.Expected))
					if qos == 1 && res.Lost() > 0 {
						say("%s %s QoS 1: %d deliveries lost although the broker acknowledged every PUBLISH", r.name, sc.Name, res.Lost())
					}
					rounds[i] = append(rounds[i], res)
				}
			}
			for i, r := range runs {
				r.results = append(r.results, medianRun(rounds[i]))
				if lost := lostNote(rounds[i]); lost != "" {
					r.lostNotes = append(r.lostNotes, lost)
				}
			}
		}
	}

	if o.heldPairs > 0 {
		for _, r := range runs {
			say("%s held QoS 1: %d workers × %d messages", r.name, o.heldPairs, o.heldMessages)
			res, err := withCPU(r.p, func() (result, error) {
				return runHeld(ctx, r.d, r.name, o.heldPairs, o.heldMessages, o.size, o.timeout, say)
			})
			if err != nil {
				return nil, nil, fmt.Errorf("%s held: %w", r.name, err)
			}
			if r.p.exited() {
				return nil, nil, r.p.exitError()
			}
			say("%s held QoS 1: %.0f msgs/s, lost %s", r.name, res.Rate(), formatLost(res.Lost(), res.Expected))
			r.results = append(r.results, res)
		}
	}

	for _, r := range runs {
		if err := r.p.stop(); err != nil {
			return nil, nil, err
		}
		results = append(results, r.results...)
		notes = append(notes, r.note())
		notes = append(notes, r.lostNotes...)
	}
	return results, notes, nil
}

// note describes a broker's runs: the TLS it negotiated, the QoS 1
// window its publishers used in the load scenarios and, for ggcore, its
// own counters at stop.
func (r *brokerRun) note() string {
	var tlsName string
	window := -1
	for _, res := range r.results {
		tlsName = res.TLS
		if res.QoS == 1 && res.Scenario != heldScenario { // held sends one at a time
			window = res.Window
		}
	}
	note := fmt.Sprintf("%s: %s", r.name, tlsName)
	if window >= 0 {
		note += fmt.Sprintf("; QoS 1 window used: %d", window)
	}
	if stats, ok := r.p.lastLineWith(`msg="broker stats"`); ok {
		note += "; counters at stop: " + brokerStats(stats)
	}
	return note
}

// benchMemory provisions a fleet of o.devices devices and measures each
// broker's memory idle and with all of them connected; with --soak, it
// then soaks ggcore with them.
func benchMemory(ctx context.Context, o *options, work string, say func(string, ...any)) (rows []memoryRow, soaks []soakResult, err error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	devices := names("dev", o.devices)
	say("provisioning %d devices for the memory figures", o.devices)
	start := time.Now()
	f, err := provision(ctx, o.ggprov, filepath.Join(work, "fleet-memory"), port, "ecp256", devices)
	if err != nil {
		return nil, nil, err
	}
	say("provisioned %d devices in %s", o.devices, time.Since(start).Round(time.Millisecond))
	if o.soak > 0 {
		if err := f.route(func(arns map[string]string) ([]subscription, error) { return ringRoutes(arns, devices) }); err != nil {
			return nil, nil, err
		}
	}
	tlsFor, err := f.clientTLS()
	if err != nil {
		return nil, nil, err
	}
	for _, b := range o.brokers {
		say("starting %s with the %d-device fleet", b, o.devices)
		p, err := startBroker(ctx, o, b, f, work, b+"-memory")
		if err != nil {
			return rows, soaks, err
		}
		r, err := measureMemory(ctx, p, b, dialer{addr: p.addr, tlsFor: tlsFor}, devices, o.concurrency, say)
		rows = append(rows, r...)
		if stopErr := p.stop(); err == nil && ctx.Err() == nil {
			err = stopErr
		}
		if err != nil {
			return rows, soaks, fmt.Errorf("%s memory: %w", b, err)
		}
	}
	if o.soak == 0 || !slices.Contains(o.brokers, "ggcore") {
		return rows, soaks, nil
	}
	say("soak: starting ggcore with the %d-device fleet for %s", o.devices, o.soak)
	p, err := startBroker(ctx, o, "ggcore", f, work, "ggcore-soak")
	if err != nil {
		return rows, soaks, err
	}
	res, err := runSoak(ctx, p, "ggcore", dialer{addr: p.addr, tlsFor: tlsFor}, devices, o, say)
	if stopErr := p.stop(); err == nil && ctx.Err() == nil {
		err = stopErr
	}
	if err != nil {
		return rows, soaks, fmt.Errorf("ggcore soak: %w", err)
	}
	say("soak: %d published, %d delivered, %d lost; VmRSS start %s, peak %s, end %s", res.Published, res.Delivered, res.Lost(),
		formatMiB(res.Start.RSS), formatMiB(res.Peak.RSS), formatMiB(res.End.RSS))
	return rows, append(soaks, res), nil
}

// names returns prefix0..prefix(n-1).
func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}
