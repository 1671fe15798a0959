package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// options are ggbench's flags.
type options struct {
	ggprov, ggcore, mosquitto string
	brokers, qos, scenarios   []string
	pubs, subs, messages      int
	size, window, rounds      int
	devices, concurrency      int
	heldPairs, heldMessages   int
	soak                      time.Duration
	timeout, drain            time.Duration
	out                       string
	keep                      bool
}

// parseFlags parses and checks the command line; every bad flag is named.
func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("ggbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.ggprov, "ggprov", "", "ggprov binary (default: go build it)")
	fs.StringVar(&o.ggcore, "ggcore", "", "ggcore binary (default: go build it static, as the gateway image ships it)")
	fs.StringVar(&o.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "mosquitto binary (the baseline)")
	brokers := fs.String("brokers", "mosquitto,mochi,ggcore", "brokers to measure, comma-separated, in order: mosquitto, mochi (ggcore's engine bare), ggcore")
	qos := fs.String("qos", "0,1", "QoS levels, comma-separated")
	scenarios := fs.String("scenarios", strings.Join(scenarioNames, ","), "scenarios, comma-separated: fanin, fanout, mesh")
	fs.IntVar(&o.pubs, "pubs", 4, "publishers")
	fs.IntVar(&o.subs, "subs", 4, "subscribers")
	fs.IntVar(&o.messages, "messages", 20000, "messages per publisher and run")
	fs.IntVar(&o.size, "size", 256, "payload bytes (at least 24: the stamp)")
	fs.IntVar(&o.window, "window", 16, "QoS 1 in-flight PUBLISHes per publisher")
	fs.IntVar(&o.rounds, "rounds", 3, "runs of each scenario and QoS per broker, brokers taking turns; the run with the median rate is reported")
	fs.IntVar(&o.devices, "devices", 1000, "devices connected for the memory figures (0: skip)")
	fs.IntVar(&o.heldPairs, "held-pairs", 10, "workers of the held scenario (0: skip)")
	fs.IntVar(&o.heldMessages, "held-messages", 10000, "QoS 1 messages per worker of the held scenario")
	fs.DurationVar(&o.soak, "soak", 0, "soak duration: the --devices fleet publishing 1 msg/s each at QoS 1 through routes (0: skip)")
	fs.IntVar(&o.concurrency, "concurrency", 16, "TLS handshakes at a time when connecting the devices")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "limit for one run")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "wait for late deliveries once traffic stops")
	fs.StringVar(&o.out, "out", "", "also write the report to `FILE`")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (bundles, configs, logs)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.brokers, o.qos, o.scenarios = splitList(*brokers), splitList(*qos), splitList(*scenarios)
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if fs.NArg() > 0 {
		bad("unexpected argument %q", fs.Arg(0))
	}
	for _, b := range o.brokers {
		if b != "mosquitto" && b != "mochi" && b != "ggcore" {
			bad("--brokers: %q is not mosquitto, mochi or ggcore", b)
		}
	}
	for _, q := range o.qos {
		if q != "0" && q != "1" {
			bad("--qos: %q is not 0 or 1", q)
		}
	}
	for _, s := range o.scenarios {
		if _, err := makeScenario(s, []string{"p"}, []string{"s"}); err != nil {
			bad("--scenarios: %v", err)
		}
	}
	for _, n := range []struct {
		name     string
		val, min int
	}{
		{"pubs", o.pubs, 1}, {"subs", o.subs, 1}, {"messages", o.messages, 1}, {"size", o.size, stampSize},
		{"window", o.window, 1}, {"rounds", o.rounds, 1}, {"devices", o.devices, 0}, {"concurrency", o.concurrency, 1},
		{"held-pairs", o.heldPairs, 0}, {"held-messages", o.heldMessages, 1},
	} {
		if n.val < n.min {
			bad("--%s: %d is below %d", n.name, n.val, n.min)
		}
	}
	if o.timeout <= 0 || o.drain <= 0 {
		bad("--timeout and --drain must be positive")
	}
	if o.soak < 0 || (o.soak > 0 && o.devices < 2) {
		bad("--soak: needs a duration of at least 0 and, to run, --devices of at least 2")
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "ggbench: %v\n", err)
		fs.Usage()
		return nil, err
	}
	return o, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
