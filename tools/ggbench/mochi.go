package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/ggcore/ggcore/core/broker"
	"github.com/ggcore/ggcore/core/tlsconf"
	"github.com/ggcore/ggcore/internal/mochiext"
)

// The bare mochi broker is ggcore's engine without ggcore: the same
// mochi version, the same mutual-TLS listener and TLS profile (strict),
// the same certificates and the limits ggcore gives mochi (broker.
// DefaultLimits: inflight window, receive maximum, packet size, and a
// per-client queue of QueueMessages, which mochi allocates for every
// client as a channel), but no identity, routing or queueing hooks:
// every certificate the identity CA signed may connect, and every
// subscriber gets what matches its filters. Beside ggcore in the tables,
// it shows what identity, routing and flow control cost.
//
// ggbench runs it as a child process: `ggbench serve-mochi --fleet DIR`,
// which logs `msg="mochi ready" addr=HOST:PORT` once it serves.

// serveMochiCommand is the argument that makes ggbench the bare broker.
const serveMochiCommand = "serve-mochi"

// serveMochi is the serve-mochi mode: it serves until ctx ends.
func serveMochi(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ggbench "+serveMochiCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("fleet", "", "the ggprov bundle whose certificates to serve with")
	if err := fs.Parse(args); err != nil || *dir == "" {
		fmt.Fprintln(stderr, "usage: ggbench serve-mochi --fleet DIR")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// ggcore's garbage collector target (core/cmd/ggcore), for the same
	// memory/throughput trade.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if err := runMochi(ctx, &fleet{Dir: *dir}, log, stdout); err != nil {
		fmt.Fprintf(stderr, "ggbench %s: %v\n", serveMochiCommand, err)
		return 1
	}
	return 0
}

func runMochi(ctx context.Context, f *fleet, log *slog.Logger, stdout io.Writer) error {
	cert, err := tls.LoadX509KeyPair(f.ServerCertPath(), f.ServerKeyPath())
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	pem, err := os.ReadFile(f.RootCAPath())
	if err != nil {
		return err
	}
	cas := x509.NewCertPool()
	if !cas.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s holds no certificate", f.RootCAPath())
	}
	cfg, err := tlsconf.Server(tlsconf.ServerOptions{Profile: tlsconf.Strict, ClientCAs: cas,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lim := broker.DefaultLimits()
	caps := broker.MochiCapabilities(lim)
	caps.MaximumClientWritesPending = int32(lim.QueueMessages)
	srv := mqtt.New(&mqtt.Options{Capabilities: caps, Logger: log, InlineClient: false})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return err
	}
	if err := srv.AddListener(mochiext.NewTLSListener("mqtts", ln, cfg, log)); err != nil {
		ln.Close()
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "level=INFO msg=\"mochi ready\" addr=%s\n", ln.Addr())
	<-ctx.Done()
	return srv.Close()
}

// startMochi runs this program in serve-mochi mode for fleet f, logging
// to <logDir>/<tag>.log, and returns once it serves.
func startMochi(ctx context.Context, f *fleet, logDir, tag string) (*process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("mochi: %w", err)
	}
	ready := make(chan string, 1)
	watch := func(line string) {
		if addr, ok := parseReadyLine(line, "mochi ready"); ok {
			select {
			case ready <- addr:
			default:
			}
		}
	}
	logPath := filepath.Join(logDir, tag+".log")
	p, err := startProcess(ctx, "mochi", logPath, []string{self, serveMochiCommand, "--fleet", f.Dir}, watch)
	if err != nil {
		return nil, err
	}
	select {
	case addr := <-ready:
		p.addr = addr
		return p, nil
	case <-p.done:
		return nil, p.exitError()
	case <-time.After(readyTimeout):
		_ = p.stop()
		return nil, fmt.Errorf("mochi: not ready within %s; log %s ends with:\n%s", readyTimeout, logPath, p.lastLines())
	case <-ctx.Done():
		_ = p.stop()
		return nil, ctx.Err()
	}
}
