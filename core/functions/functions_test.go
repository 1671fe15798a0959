package functions

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ggcore/ggcore/core/config"
)

type fakeTokens struct {
	mu     sync.Mutex
	issued []string
	live   map[string]bool
}

func (f *fakeTokens) Issue(arn string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := arn + "#" + string(rune('a'+len(f.issued)))
	f.issued = append(f.issued, tok)
	if f.live == nil {
		f.live = map[string]bool{}
	}
	f.live[tok] = true
	return tok
}

func (f *fakeTokens) Revoke(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.live, tok)
}

// script writes an executable shell script into a new code directory.
func script(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func spec(arn, dir string, pinned bool) Spec {
	return Spec{CodeDir: dir, Function: config.Function{FunctionArn: arn, Executable: "run.sh", Pinned: pinned,
		EncodingType: "binary", IsolationMode: config.IsolationNoContainer, Timeout: 3 * time.Second}}
}

func TestPinnedCrashRestartedAndCounted(t *testing.T) {
	const arn = "arn:aws:lambda:us-east-1:123456789012:function:crash:1"
	dir := script(t, `echo "token=$AWS_CONTAINER_AUTHORIZATION_TOKEN arn=$MY_FUNCTION_ARN port=$GG_DAEMON_PORT" >> "$HOME/starts"; exit 3`)
	tokens := &fakeTokens{}
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tokens: tokens, Port: 8123,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond})
	defer s.Close()
	start := time.Now()
	s.Set([]Spec{spec(arn, dir, true)})
	waitFor(t, "three restarts", func() bool { return s.Counts(arn).Restarts >= 3 })
	// Backoff doubles: 50 + 100 ms at least before the third exit.
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("three restarts in %v: no backoff", d)
	}
	c := s.Counts(arn)
	if c.Crashes < 3 {
		t.Fatalf("counts %+v: crashes not counted", c)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "starts"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) < 3 || lines[0] == lines[1] || !strings.Contains(lines[0], "arn="+arn+" port=8123") {
		t.Fatalf("starts: %q: want a fresh token per process and the v1 environment", lines)
	}
	s.Set(nil)
	waitFor(t, "tokens revoked", func() bool { tokens.mu.Lock(); defer tokens.mu.Unlock(); return len(tokens.live) == 0 })
}

func TestOnDemandStartsOnWorkAndStopsIdle(t *testing.T) {
	const arn = "arn:aws:lambda:us-east-1:123456789012:function:od:1"
	dir := script(t, `echo started >> "$HOME/starts"; exec sleep 60`)
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tokens: &fakeTokens{}, Port: 8000,
		MaxOnDemand: 2, IdleTimeout: 300 * time.Millisecond})
	defer s.Close()
	s.Set([]Spec{spec(arn, dir, false)})
	time.Sleep(100 * time.Millisecond)
	if n := s.Counts(arn).Running; n != 0 {
		t.Fatalf("on-demand function running %d processes before any work", n)
	}
	for i := 1; i <= 5; i++ {
		s.Work(arn, i)
	}
	if n := s.Counts(arn).Running; n != 2 {
		t.Fatalf("running %d processes with 5 items waiting, want the bound 2", n)
	}
	waitFor(t, "idle processes stopped", func() bool { return s.Counts(arn).Running == 0 })
}
