package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestEngineLogger checks which of mochi's lines reach ggcore's log: its
// info lines only when ggcore logs at debug level, its warnings always.
func TestEngineLogger(t *testing.T) {
	tests := []struct {
		level    slog.Level
		wantInfo bool
	}{
		{slog.LevelDebug, true},
		{slog.LevelInfo, false},
		{slog.LevelWarn, false},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var out bytes.Buffer
			l := engineLogger(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: tt.level})))
			l.Info("added hook", "hook", "h")
			l.With("listener", "mqtts").Warn("error processing packet")
			got := out.String()
			if strings.Contains(got, "added hook") != tt.wantInfo {
				t.Errorf("info line present = %v, want %v:\n%s", !tt.wantInfo, tt.wantInfo, got)
			}
			if !strings.Contains(got, "error processing packet") || !strings.Contains(got, "component=mqtt") || !strings.Contains(got, "listener=mqtts") {
				t.Errorf("warning missing or without its attributes:\n%s", got)
			}
		})
	}
}
