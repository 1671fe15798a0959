// Command ggbench measures ggcore's local MQTT broker against mosquitto
// and against its own engine, mochi, run bare (mochi.go), side by side in
// one run, with the same certificates and mutual TLS, and prints Markdown
// tables. It is what `make bench` runs.
//
//	go run ./tools/ggbench [flags]
//
// One invocation:
//
//  1. builds ggprov and ggcore (unless --ggprov / --ggcore name binaries;
//     ggcore static, CGO_ENABLED=0 -trimpath -ldflags="-s -w", as the
//     gateway's image ships it; the report says which build it measured)
//     and provisions a fleet with `ggprov init`: a core, publishers
//     pub0..pubN-1 and subscribers sub0..subM-1. It writes group.json
//     subscriptions routing every publisher to every subscriber on
//     bench/<publisher>/#, so ggcore routes every message through its
//     subscription table.
//  2. starts mosquitto (with a generated mosquitto.conf: one mutual-TLS
//     listener on 127.0.0.1, the bundle's identity CA and MQTT server
//     certificate, clients named by their certificate CN, no persistence,
//     Nagle off as in Go, and a queue large enough never to drop) and
//     ggcore (`ggcore --config <bundle>/config.json`, ready once it logs
//     "ggcore ready"). Every client verifies the server as "localhost"
//     against the group CA and uses its thing name as MQTT client ID.
//  3. for each scenario (fanin: all publishers to sub0; fanout: pub0 to
//     all subscribers; mesh: all to all) and QoS 0 and 1, runs the same
//     load against each broker in turn, so all see the same background
//     load, --rounds times (3), reporting each broker's run with the
//     median rate: --messages stamped payloads per publisher (QoS 1: at most
//     --window unacknowledged per publisher, and never more than the
//     broker's Receive Maximum). It measures deliveries per second (from
//     the first send to the last delivery), p50 and p99 end-to-end
//     latency, lost deliveries (expected = publishers × messages ×
//     subscribers), and the CPU time per delivery of the broker and of
//     ggbench itself, which share the machine's cores.
//     Then the held scenario (held.go) against each broker: --held-pairs
//     workers, each publishing --held-messages QoS 1 messages one at a time
//     while its subscriber holds its acknowledgements until it is done.
//  4. provisions a second fleet of --devices devices (EC P-256 keys) and
//     reads each broker's resident memory (VmRSS, VmHWM) idle and with
//     every device connected; with --soak, then runs ggcore with every
//     device publishing one QoS 1 message a second, routed to the next
//     device, counting losses and sampling memory (soak.go).
//  5. prints the tables on stdout (and to --out FILE); progress goes to
//     stderr. Every process it started is stopped on exit and on Ctrl-C.
//
// Flags:
//
//	--ggprov PATH        ggprov binary (default: go build it)
//	--ggcore PATH        ggcore binary (default: go build it static)
//	--mosquitto PATH     mosquitto binary (default /usr/sbin/mosquitto)
//	--brokers LIST       brokers to measure, in order (default mosquitto,mochi,ggcore;
//	                     mochi is ggcore's engine without ggcore's hooks, see mochi.go)
//	--pubs N, --subs M   publishers and subscribers (default 4, 4)
//	--messages K         messages per publisher and run (default 20000)
//	--size BYTES         payload size, at least 24 (default 256)
//	--qos LIST           QoS levels (default 0,1)
//	--scenarios LIST     fanin, fanout, mesh (default all three)
//	--window W           QoS 1 in-flight window per publisher (default 16)
//	--held-pairs N       workers of the held scenario; 0 skips (default 10)
//	--held-messages K    QoS 1 messages per held worker (default 10000)
//	--devices D          devices connected for the memory figures; 0 skips (default 1000)
//	--soak T             soak ggcore with the D devices for T; 0 skips (default 0)
//	--concurrency C      handshakes at a time when connecting them (default 16)
//	--timeout T          limit for one run (default 60s)
//	--drain T            wait for late deliveries once traffic stops (default 3s)
//	--out FILE           also write the report to FILE
//	--keep               keep the work directory (bundles, configs, logs)
//
// `ggbench serve-mochi --fleet DIR` is the bare mochi broker ggbench runs
// as a child process. Everything listens on 127.0.0.1 only. The work directory (logs of both
// brokers included) is removed at the end unless --keep is given.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main with its inputs explicit; it returns the exit status: 0 when
// every measurement ran, 1 on failure, 2 for usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == serveMochiCommand {
		return serveMochi(ctx, args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	began := time.Now()
	say := func(format string, args ...any) {
		fmt.Fprintf(stderr, "ggbench [%5.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	rep, err := bench(ctx, o, say)
	if err != nil {
		if ctx.Err() != nil {
			say("interrupted: %v", err)
		} else {
			say("error: %v", err)
		}
		return 1
	}
	md := rep.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			say("error: %v", err)
			return 1
		}
		say("report written to %s", o.out)
	}
	say("done in %s", time.Since(began).Round(time.Second))
	return 0
}

// loadAverage returns the 1-minute load average from /proc/loadavg, or
// "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// raiseFileLimit lifts the soft open-files limit to the hard one, for
// ggbench and (because it is set explicitly) for the brokers it starts:
// the memory figures hold a thousand connections open on each side.
func raiseFileLimit(say func(string, ...any)) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		say("cannot raise the open-files limit: %v", err)
	}
}
