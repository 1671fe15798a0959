package functions

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// script writes an executable shell script into a new code directory
// that any user may reach and write (run by root, functions run as
// another user).
func script(t *testing.T, body string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ggcore-functions-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
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

// lastToken is the most recent token issued for arn.
func (f *fakeTokens) lastToken(arn string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.issued) - 1; i >= 0; i-- {
		if strings.HasPrefix(f.issued[i], arn+"#") && f.live[f.issued[i]] {
			return f.issued[i]
		}
	}
	return ""
}

// A pinned process killed for a timed-out invocation is counted as a
// timeout, not a crash, and restarted with a fresh token; Kill of an
// unknown token does nothing.
func TestKillTimedOutRestartsPinned(t *testing.T) {
	const arn = "arn:aws:lambda:us-east-1:123456789012:function:slow:1"
	dir := script(t, `exec sleep 60`)
	tokens := &fakeTokens{}
	s := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Tokens: tokens, Port: 8000,
		MinBackoff: 50 * time.Millisecond})
	defer s.Close()
	s.Set([]Spec{spec(arn, dir, true)})
	waitFor(t, "the pinned process", func() bool { return tokens.lastToken(arn) != "" })
	first := tokens.lastToken(arn)
	s.Kill("no such token")
	s.Kill(first)
	waitFor(t, "a restart with a new token", func() bool {
		tok := tokens.lastToken(arn)
		return tok != "" && tok != first && s.Counts(arn).Running == 1
	})
	if c := s.Counts(arn); c.Timeouts != 1 || c.Crashes != 0 || c.Restarts != 1 {
		t.Fatalf("counts %+v; want one timeout, no crash, one restart", c)
	}
}

// logBuffer is a concurrency-safe log destination.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Run by root, a function without RunAs runs as the default identity,
// never root; with RunAs, as that uid/gid; in both isolation modes.
func TestDefaultRunAsIsNotRoot(t *testing.T) {
	if d := DefaultIdentity(); d.Uid == 0 || d.Gid == 0 {
		t.Fatalf("DefaultIdentity() = %+v: root", d)
	}
	if os.Geteuid() != 0 {
		t.Skip("functions keep ggcore's own user when it is not root; the uid switch needs root")
	}
	dir := script(t, `echo "ids=$(id -u):$(id -g) groups=$(id -G)"; exec sleep 60`)
	for _, tc := range []struct {
		name      string
		isolation string
		runAs     *config.RunAs
		want      string
	}{
		{"default, container", config.IsolationContainer, nil, "ids=4242:4343 groups=4343"},
		{"default, no container", config.IsolationNoContainer, nil, "ids=4242:4343 groups=4343"},
		{"RunAs", config.IsolationNoContainer, &config.RunAs{Uid: 1234, Gid: 5678}, "ids=1234:5678 groups=5678"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const arn = "arn:aws:lambda:us-east-1:123456789012:function:who:1"
			logs := &logBuffer{}
			s := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Tokens: &fakeTokens{}, Port: 8000,
				DefaultRunAs: &config.RunAs{Uid: 4242, Gid: 4343}})
			defer s.Close()
			sp := spec(arn, dir, true)
			sp.IsolationMode, sp.RunAs = tc.isolation, tc.runAs
			s.Set([]Spec{sp})
			waitFor(t, "the function's output", func() bool { return strings.Contains(logs.String(), "line=\"ids=") })
			if !strings.Contains(logs.String(), tc.want) {
				t.Fatalf("want %q in the log:\n%s", tc.want, logs)
			}
		})
	}
}

// Code on a noexec file system runs from a copy under the run root; code
// elsewhere runs in place; unused copies are pruned.
func TestRunnableCodeOffNoexec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a noexec tmpfs needs root")
	}
	data := t.TempDir()
	if err := syscall.Mount("tmpfs", data, "tmpfs", syscall.MS_NOEXEC|syscall.MS_NOSUID, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(data, syscall.MNT_DETACH) })
	code := filepath.Join(data, strings.Repeat("ab", 32))
	if err := os.MkdirAll(filepath.Join(code, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(code, "run.sh"), []byte("#!/bin/sh\necho ran\n"), 0o755)
	os.WriteFile(filepath.Join(code, "lib", "data.txt"), []byte("x"), 0o644)
	if out, err := exec.Command(filepath.Join(code, "run.sh")).CombinedOutput(); err == nil {
		t.Fatalf("the noexec mount ran the code: %s", out)
	}
	root := filepath.Join(t.TempDir(), "run")
	run, err := RunnableCode(code, root)
	if err != nil {
		t.Fatal(err)
	}
	if run != filepath.Join(root, filepath.Base(code)) {
		t.Fatalf("RunnableCode = %s; want a copy under %s", run, root)
	}
	if out, err := exec.Command(filepath.Join(run, "run.sh")).CombinedOutput(); err != nil || string(out) != "ran\n" {
		t.Fatalf("the copy does not run: %q %v", out, err)
	}
	if b, err := os.ReadFile(filepath.Join(run, "lib", "data.txt")); err != nil || string(b) != "x" {
		t.Fatalf("the copy lacks lib/data.txt: %q %v", b, err)
	}
	if again, err := RunnableCode(code, root); err != nil || again != run {
		t.Fatalf("second RunnableCode = %s, %v; want the same copy", again, err)
	}
	plain := script(t, "exit 0")
	if got, err := RunnableCode(plain, root); err != nil || got != plain {
		t.Fatalf("RunnableCode(%s) = %s, %v; want it in place", plain, got, err)
	}
	PruneRunnable(root, nil)
	if _, err := os.Stat(run); !os.IsNotExist(err) {
		t.Fatalf("the unused copy is still there: %v", err)
	}
}
