package testtool

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is a program a test runs in the background (ggcore, ggcloud,
// mosquitto): its output is collected, its exit is watched, and it is
// stopped when the test ends.
type Process struct {
	Cmd *exec.Cmd
	// Output is what it wrote to stdout and stderr.
	Output *Buffer

	exited   chan struct{} // closed when it has exited
	err      error         // Cmd.Wait's result, once exited is closed
	stopOnce sync.Once
	stopErr  error
}

// StartProcess starts cmd with stdout and stderr into Output. It dies
// with the test binary (Pdeathsig), and is stopped at cleanup unless the
// test stopped it.
func StartProcess(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Output: &Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Output, p.Output
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// Exited is closed once the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Err is how the process ended (exec.Cmd.Wait's error), nil while it
// runs.
func (p *Process) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// WaitFor waits up to Timeout for substr in Output at or after byte
// offset from; it reports whether it came. It stops waiting early when
// the process exits.
func (p *Process) WaitFor(substr string, from int) bool {
	return p.Output.WaitFor(substr, from, Timeout, p.exited)
}

// ErrStopTimeout is Stop's error for a process that did not exit within
// Timeout of SIGTERM, and was killed.
var ErrStopTimeout = errors.New("no exit within the timeout of SIGTERM: killed")

// Stop sends SIGTERM and waits up to Timeout for the exit, then kills
// the process. It returns how the process ended: nil for exit status 0,
// ErrStopTimeout when it had to be killed. Calling it again returns the
// same.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			p.stopErr = p.err
			return
		default:
		}
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
			p.stopErr = p.err
		case <-time.After(Timeout):
			_ = p.Cmd.Process.Kill()
			<-p.exited
			p.stopErr = fmt.Errorf("%s: %w", p.Cmd.Path, ErrStopTimeout)
		}
	})
	return p.stopErr
}

// Kill ends the process with SIGKILL, as a power cut would, and waits
// for it; Stop then has nothing left to do.
func (p *Process) Kill() {
	p.stopOnce.Do(func() {
		_ = p.Cmd.Process.Kill()
		<-p.exited
		p.stopErr = p.err
	})
}
