package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// mosquittoQueue is mosquitto's per-client queue of QoS 1/2 messages
// beyond those in flight (max_queued_messages). Its default, 1000, drops
// messages for a subscriber that falls behind in a fan-out; the bench
// sets it far above any backlog a run can build (pubs × messages), so the
// baseline loses nothing and every drop in the table is the broker's
// own policy under test, not a tuning accident. max_queued_bytes stays 0
// (no byte limit).
const mosquittoQueue = 10_000_000

// mosquittoParams are the settings of the baseline broker.
type mosquittoParams struct {
	Port           int
	CAFile         string // verifies client certificates: the identity CA
	CertFile       string // the MQTT server certificate ggcore serves
	KeyFile        string
	LogFile        string
	RunAsRoot      bool // mosquitto started as root would switch to user "mosquitto"
	MaxConnections int  // -1: unlimited
}

// mosquittoConf renders mosquitto.conf for the baseline: one mutual-TLS
// listener on 127.0.0.1, clients identified by their certificate's CN, no
// persistence, a log file, and Nagle off (Go's sockets, and so ggcore's,
// disable it by default; mosquitto's default would add delayed-ACK
// latency to small messages and make the comparison unfair).
func mosquittoConf(p mosquittoParams) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# written by ggbench; baseline broker for the ggcore benchmark")
	w("per_listener_settings false")
	w("persistence false")
	w("log_dest file %s", p.LogFile)
	w("log_type error")
	w("log_type warning")
	w("log_type notice")
	w("log_type information")
	w("connection_messages false")
	w("set_tcp_nodelay true")
	w("max_queued_messages %d", mosquittoQueue)
	w("max_queued_bytes 0")
	w("allow_anonymous false")
	if p.RunAsRoot {
		w("user root")
	}
	w("")
	w("listener %d 127.0.0.1", p.Port)
	w("max_connections %d", p.MaxConnections)
	w("cafile %s", p.CAFile)
	w("certfile %s", p.CertFile)
	w("keyfile %s", p.KeyFile)
	w("require_certificate true")
	w("use_identity_as_username true")
	w("tls_version tlsv1.2")
	return b.String()
}

// startMosquitto writes <logDir>/<tag>.conf for fleet f on a free port and
// runs mosquitto with it until it accepts connections.
func startMosquitto(ctx context.Context, bin string, f *fleet, logDir, tag string) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := mosquittoConf(mosquittoParams{
		Port:           port,
		CAFile:         f.RootCAPath(),
		CertFile:       f.ServerCertPath(),
		KeyFile:        f.ServerKeyPath(),
		LogFile:        filepath.Join(logDir, tag+".log"),
		RunAsRoot:      os.Geteuid() == 0,
		MaxConnections: -1,
	})
	confPath := filepath.Join(logDir, tag+".conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("mosquitto: write %s: %w", confPath, err)
	}
	p, err := startProcess(ctx, "mosquitto", filepath.Join(logDir, tag+".out"), []string{bin, "-c", confPath}, nil)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := p.waitTCP(ctx, addr, 10*time.Second); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("%w (log %s)", err, filepath.Join(logDir, tag+".log"))
	}
	p.addr = addr
	return p, nil
}

// mosquittoVersion returns mosquitto's version line ("mosquitto version
// 2.0.11"), or "" when it cannot be told.
func mosquittoVersion(ctx context.Context, bin string) string {
	// mosquitto -h prints its usage, version first, and exits with 3.
	out, _ := exec.CommandContext(ctx, bin, "-h").CombinedOutput()
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(line))
}
