package main

import (
	"context"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// startupTrace logs, at debug level, each step of a start with the time
// since the start and since the machine booted (CLOCK_BOOTTIME, the clock
// of gginit's console lines), so that a boot's stages can be measured
// in the guest: ggcore --log-level debug, or ggcore.loglevel=debug on
// the image's kernel command line.
type startupTrace struct {
	log   *slog.Logger
	began time.Time
}

func newStartupTrace(log *slog.Logger) *startupTrace {
	return &startupTrace{log: log, began: time.Now()}
}

// step logs that the start reached step.
func (t *startupTrace) step(step string, attrs ...any) {
	if t == nil || !t.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	t.log.Debug("startup", append([]any{"step", step, "after", time.Since(t.began).Round(100 * time.Microsecond), "uptime", uptime()}, attrs...)...)
}

// uptime is the time since the machine booted, 0 if unknown.
func uptime() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return ""
	}
	return time.Duration(ts.Nano()).Round(100 * time.Microsecond).String()
}
