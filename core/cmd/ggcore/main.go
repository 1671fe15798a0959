// Command ggcore is the Greengrass-v1-compatible edge core: the local
// mutual-TLS MQTT broker with subscription-table routing.
//
//	ggcore --config /greengrass/config/config.json
//
// SIGHUP re-reads group.json (a bad one is refused and the running table
// kept); SIGTERM and SIGINT stop the core cleanly.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// statsInterval is how often changed broker counters are logged.
const statsInterval = time.Minute

// gcPercent is the garbage collector's target unless GOGC is set. mochi
// allocates per message; letting the heap grow to three times the live
// data instead of two buys about a tenth more throughput under load, for
// more resident memory while messages flow. Bursts of connections are
// collected with a lower target and their garbage returned to the kernel
// once over (memory.go), so an idle fleet does not pay for it.
// GOMEMLIMIT, as the Go runtime reads it, caps the total where memory is
// tight.
const gcPercent = 200

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// run is main with its inputs and outputs explicit; it returns the exit
// status: 0 after a clean stop, 1 when the core cannot start, 2 for usage.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("ggcore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "/greengrass/config/config.json", "path of config.json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	waitFD := fs.Int("wait-fd", -1, "before reading anything, wait until this inherited file descriptor reaches end of file (gginit closes it once the data partition is mounted)")
	readyFD := fs.Int("ready-fd", -1, "once ready, write a line to this inherited file descriptor and close it (gginit brings the network up then)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: ggcore [--config PATH] [--log-level LEVEL] [--wait-fd N] [--ready-fd N]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ggcore: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "ggcore: --log-level: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	log.Debug("ggcore starting", "uptime", uptime())
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	ready := inheritedFile(*readyFD, "ready")
	defer ready.Close() // a start that fails closes it without a word
	go warmListen()
	var warm *tpmWarmup
	if *waitFD >= 0 {
		// Started by gginit, on a gateway whose TPM is the core's.
		warm = warmTPM(keyspec.DefaultTPMDevice)
		defer warm.close()
		if err := waitGate(ctx, *waitFD); err != nil {
			log.Error("ggcore cannot start", "error", err)
			return 1
		}
		log.Debug("startup", "step", "data partition ready", "uptime", uptime())
	}
	began := time.Now()
	c, err := start(*configPath, log, warm)
	warm.close() // unless the store took it
	if err != nil {
		log.Error("ggcore cannot start", "config", *configPath, "error", err)
		return 1
	}
	log.Info("ggcore ready", "addr", c.broker.Addr().String(), "group", c.groupID,
		"devices", c.devices, "subscriptions", c.subscriptions, "tls_profile", c.profile,
		"startup", time.Since(began).Round(time.Millisecond))
	if ready != nil {
		_, _ = ready.WriteString("ready\n")
		ready.Close()
	}
	// Reading the group and keys leaves garbage the heap would keep for
	// minutes; an idle gateway should not.
	debug.FreeOSMemory()
	go watchBursts(c.broker.Connections).run(ctx)
	if c.dcm != nil && c.dcm.Certificate() == nil {
		log.Info("waiting for the first MQTT server certificate from the control plane; device connections are refused until it arrives",
			"control_plane", c.cfg.CoreThing.GGHost)
	}

	ticker := time.NewTicker(statsInterval)
	defer ticker.Stop()
	last := c.stats()
	for {
		select {
		case <-ctx.Done():
			log.Info("ggcore stopping", "signal", "TERM/INT")
			if err := c.stop(); err != nil {
				log.Error("ggcore stop", "error", err)
				return 1
			}
			log.Info("ggcore stopped")
			return 0
		case reason := <-c.reboot:
			log.Info("ggcore stopping to reboot the system", "reason", reason, "exit_status", exitReboot)
			if err := c.stop(); err != nil {
				log.Error("ggcore stop", "error", err)
			}
			return exitReboot
		case <-hup:
			c.reloadGroup()
		case <-ticker.C:
			if s := c.stats(); s != last {
				logStats(log, s)
				last = s
			}
		}
	}
}

// inheritedFile is file descriptor fd, inherited from gginit, marked to
// be closed on exec so that the local functions ggcore starts do not
// hold it open; nil if fd is negative. Closing a nil *os.File is
// harmless.
func inheritedFile(fd int, name string) *os.File {
	if fd < 0 {
		return nil
	}
	syscall.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), name)
}

// waitGate waits until file descriptor fd, inherited from gginit (the
// read end of a pipe), reaches end of file: gginit starts ggcore while it
// mounts the data partition, and closes the pipe's other end once the
// partition is ready. A signal that stops ggcore ends the wait.
func waitGate(ctx context.Context, fd int) error {
	f := os.NewFile(uintptr(fd), "gate")
	if f == nil {
		return fmt.Errorf("--wait-fd %d: not an open file descriptor", fd)
	}
	defer f.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, f)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("--wait-fd %d: %w", fd, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("--wait-fd %d: stopped by a signal while waiting", fd)
	}
}
