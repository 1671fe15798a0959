package broker

import (
	"context"
	"log/slog"
)

// engineLogger is the logger mochi gets. mochi says at info level only
// what ggcore's own lines already say (hooks added, listener attached,
// starting, started, stopping); below debug those lines are left out, and
// its warnings and errors kept. Each line costs the start time on an
// emulated gateway, and they say nothing an operator acts on.
func engineLogger(log *slog.Logger) *slog.Logger {
	l := log.With("component", "mqtt")
	if log.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(minLevel{h: l.Handler(), min: slog.LevelWarn})
}

// minLevel is a handler that passes records of level min and above to h.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}

func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }

func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h: m.h.WithAttrs(as), min: m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h: m.h.WithGroup(name), min: m.min}
}
