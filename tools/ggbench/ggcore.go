package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// readyTimeout bounds how long ggcore may take from start to "ggcore ready".
const readyTimeout = 30 * time.Second

// startGGCore runs `ggcore --config <fleet>/config.json`, logging to
// <logDir>/<tag>.log, and returns once ggcore has logged "ggcore ready".
func startGGCore(ctx context.Context, bin string, f *fleet, logDir, tag string) (*process, error) {
	ready := make(chan string, 1)
	watch := func(line string) {
		if addr, ok := parseReady(line); ok {
			select {
			case ready <- addr:
			default:
			}
		}
	}
	logPath := filepath.Join(logDir, tag+".log")
	p, err := startProcess(ctx, "ggcore", logPath, []string{bin, "--config", f.ConfigPath()}, watch)
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
		return nil, fmt.Errorf("ggcore: no \"ggcore ready\" line within %s; log %s ends with:\n%s", readyTimeout, logPath, p.lastLines())
	case <-ctx.Done():
		_ = p.stop()
		return nil, ctx.Err()
	}
}

// parseReady recognises ggcore's ready line (slog text format) and returns
// the value of its addr attribute.
func parseReady(line string) (addr string, ok bool) { return parseReadyLine(line, "ggcore ready") }

// parseReadyLine recognises a ready line with message msg and returns the
// value of its addr attribute.
func parseReadyLine(line, msg string) (addr string, ok bool) {
	if !strings.Contains(line, `msg="`+msg+`"`) {
		return "", false
	}
	for _, field := range strings.Fields(line) {
		if v, found := strings.CutPrefix(field, "addr="); found {
			return strings.Trim(v, `"`), v != ""
		}
	}
	return "", false
}

// brokerStats returns the counters of ggcore's "broker stats" log line
// (the attributes after the message), e.g. "clients=0 refused=0
// unrouted=0 dropped=3058 inflight_dropped=81".
func brokerStats(line string) string {
	_, attrs, ok := strings.Cut(line, `msg="broker stats"`)
	if !ok {
		return ""
	}
	return strings.TrimSpace(attrs)
}
