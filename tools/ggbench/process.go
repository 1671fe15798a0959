package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to exit after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// process is a child process started by ggbench (a broker). Its stdout
// and stderr go, line by line, to a log file and to an optional watcher.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	// addr is where the broker serves MQTT, once known.
	addr string

	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done

	stopOnce sync.Once
	stopErr  error

	mu   sync.Mutex
	tail []string // last lines of output, for error messages
}

// startProcess starts argv with its output logged to logPath. Every line
// is passed to watch (may be nil) from one goroutine. The process gets
// SIGTERM when ctx ends or when ggbench dies (Pdeathsig).
func startProcess(ctx context.Context, name, logPath string, argv []string, watch func(line string)) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("%s: create log: %w", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: pipe: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	// Own process group: a Ctrl-C reaches ggbench, which then stops its
	// children in order, rather than all of them at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", name, argv[0], err)
	}
	pw.Close()

	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		defer logFile.Close()
		p.copyLines(pr, logFile, watch)
	}()
	go func() {
		err := cmd.Wait()
		<-copied
		pr.Close()
		p.waitErr = err
		close(p.done)
	}()
	return p, nil
}

// copyLines copies r to w line by line, keeps the last lines and calls
// watch for each.
func (p *process) copyLines(r io.Reader, w io.Writer, watch func(string)) {
	const keep = 20
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(w, line)
		p.mu.Lock()
		p.tail = append(p.tail, line)
		if len(p.tail) > keep {
			p.tail = p.tail[len(p.tail)-keep:]
		}
		p.mu.Unlock()
		if watch != nil {
			watch(line)
		}
	}
}

// PID is the child's process ID.
func (p *process) PID() int { return p.cmd.Process.Pid }

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user and system) the process has used so far,
// from /proc/PID/stat; false when it cannot be read.
func (p *process) cpuTime() (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
	if err != nil {
		return 0, false
	}
	d := parseCPUTime(string(b))
	return d, d >= 0
}

// selfCPU is the CPU time (user and system) ggbench has used so far;
// false when it cannot be read.
func selfCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// withCPU runs a load and records the CPU time broker p and ggbench
// itself used meanwhile (result.BrokerCPU, result.LoadCPU).
func withCPU(p *process, run func() (result, error)) (result, error) {
	broker0, okBroker := p.cpuTime()
	self0, okSelf := selfCPU()
	res, err := run()
	if broker1, ok := p.cpuTime(); ok && okBroker {
		res.BrokerCPU = broker1 - broker0
	}
	if self1, ok := selfCPU(); ok && okSelf {
		res.LoadCPU = self1 - self0
	}
	return res, err
}

// parseCPUTime reads utime and stime (fields 14 and 15) from the text of
// /proc/PID/stat, -1 when it cannot; the command name (field 2) may hold
// spaces and parentheses, so fields are counted after its last ')'.
func parseCPUTime(stat string) time.Duration {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(stat[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return -1
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return time.Duration(utime+stime) * clockTick
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// lastLines returns the last lines the process wrote, for error messages.
func (p *process) lastLines() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// lastLineWith returns the last of the recent output lines containing s.
func (p *process) lastLineWith(s string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.tail) - 1; i >= 0; i-- {
		if strings.Contains(p.tail[i], s) {
			return p.tail[i], true
		}
	}
	return "", false
}

// exitError describes how the process ended, with its last output lines.
func (p *process) exitError() error {
	return fmt.Errorf("%s exited (%v); log %s ends with:\n%s", p.name, p.waitErr, p.logPath, p.lastLines())
}

// stop sends SIGTERM, waits up to stopGrace, then kills. It returns an
// error when the process did not exit cleanly (status 0) on SIGTERM.
// Calls after the first return the first one's result.
func (p *process) stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.terminate() })
	return p.stopErr
}

func (p *process) terminate() error {
	if p.exited() {
		return p.exitError()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: SIGTERM: %w", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s of SIGTERM and was killed; log %s", p.name, stopGrace, p.logPath)
	}
	if p.waitErr != nil {
		return p.exitError()
	}
	return nil
}

// waitTCP waits until addr accepts TCP connections, the process exits, or
// timeout passes.
func (p *process) waitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var d net.Dialer
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := d.DialContext(dctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return p.exitError()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s does not accept connections after %s: %w", p.name, addr, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return strconv.Atoi(port)
}
