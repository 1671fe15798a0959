package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

const (
	readyTimeout = testtool.Timeout // start to `ggcore ready`
	stopTimeout  = testtool.Timeout // SIGTERM to exit
)

// coreProc is a running ggcore.
type coreProc struct {
	cmd    *exec.Cmd
	log    *testtool.Buffer
	exited chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after exited is closed

	stopped bool // stop has run; the cleanup has nothing left to do
}

// startCore runs ggcore on the fleet's config.json and waits for
// `ggcore ready`. Cleanup stops it with SIGTERM and asserts a clean exit.
// If another test took the fleet's port in the meantime, the fleet moves
// to a new port and the core is started again.
func startCore(t *testing.T, f *fleet) *coreProc {
	t.Helper()
	for attempt := 1; ; attempt++ {
		c := &coreProc{log: &testtool.Buffer{}, exited: make(chan struct{})}
		c.cmd = exec.Command(bin.ggcore, "--config", f.configPath())
		c.cmd.Stdout = c.log
		c.cmd.Stderr = c.log
		// The core must not outlive the test binary.
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("start ggcore: %v", err)
		}
		go func() {
			c.err = c.cmd.Wait()
			close(c.exited)
		}()
		if c.log.WaitFor("ggcore ready", 0, readyTimeout, c.exited) {
			t.Cleanup(func() {
				if !c.stopped {
					c.stop(t)
				}
			})
			if want := "addr=" + f.addr(); !strings.Contains(c.log.String(), want) {
				t.Errorf("the ggcore ready line does not say %s:\n%s", want, c.log)
			}
			return c
		}
		select {
		case <-c.exited:
			if attempt < 3 && strings.Contains(c.log.String(), "address already in use") {
				t.Logf("port %d taken; moving the fleet to another port", f.port)
				f.port = freePort(t)
				f.setConfig(t, "coreThing.ggMqttPort", f.port)
				continue
			}
			t.Fatalf("ggcore exited before it was ready (%v); its log:\n%s", c.err, c.log)
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
			t.Fatalf("ggcore not ready within %v; its log:\n%s", readyTimeout, c.log)
		}
	}
}

// stop sends SIGTERM and asserts exit status 0 within stopTimeout.
func (c *coreProc) stop(t *testing.T) {
	t.Helper()
	c.stopped = true
	select {
	case <-c.exited:
		if t.Failed() {
			return // already reported, with the log
		}
		t.Errorf("ggcore had exited before the test ended (%v); its log:\n%s", c.err, c.log)
		return
	default:
	}
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM ggcore: %v", err)
	}
	select {
	case <-c.exited:
		if c.err != nil {
			t.Errorf("ggcore did not stop cleanly on SIGTERM: %v; its log:\n%s", c.err, c.log)
		} else if t.Failed() {
			t.Logf("ggcore log:\n%s", c.log)
		}
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("ggcore did not exit within %v of SIGTERM; its log:\n%s", stopTimeout, c.log)
	}
}

// reload sends SIGHUP and waits for a log line containing want (e.g.
// "group reloaded", or "group reload refused").
func (c *coreProc) reload(t *testing.T, want string) {
	t.Helper()
	from := c.log.Len()
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("SIGHUP ggcore: %v", err)
	}
	if !c.log.WaitFor(want, from, testtool.Timeout, c.exited) {
		t.Fatalf("no log line containing %q within %v of SIGHUP; log since:\n%s", want, testtool.Timeout, c.log.String()[from:])
	}
}

// runCoreToExit runs ggcore expecting it to stop by itself (bad config);
// it returns the exit status and the output.
func runCoreToExit(t *testing.T, f *fleet) (int, string) {
	t.Helper()
	return runBinaryToExit(t, bin.ggcore, f)
}

// runBinaryToExit is runCoreToExit for a given ggcore binary.
func runBinaryToExit(t *testing.T, ggcore string, f *fleet) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ggcore, "--config", f.configPath())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("ggcore still running after %v with a bad config; its log:\n%s", stopTimeout, out.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	default:
		t.Fatalf("run ggcore: %v", err)
		return -1, ""
	}
}
