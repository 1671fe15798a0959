// Package functions supervises the processes of a group's local
// functions: pinned functions start with the core and are restarted with
// backoff when they exit; on-demand functions start when work is queued
// for them, up to a bound, and stop when idle. Each process gets a fresh
// IPC token and the v1 environment the SDKs read.
//
// When ggcore runs as root, every function runs as its RunAs uid/gid,
// and a function without RunAs runs as the default access identity
// (Options.DefaultRunAs; DefaultIdentity: ggc_user/ggc_group as v1 names
// them, else nobody/nogroup, 65534:65534), never as root unless its
// RunAs says uid 0. Its code directory and every directory above it must
// be searchable by that identity; RunnableCode copies code off a file
// system mounted noexec. A GreengrassContainer function also
// runs in its own mount and PID namespaces, and in a cgroup limited to
// its MemorySize where the host offers cgroup v2's memory controller;
// what the host refuses is logged once and the function runs without it.
// When ggcore does not run as root, functions run as ggcore's own user.
//
// An invocation that outlives the function's Timeout is failed by the
// IPC server, which calls Kill with the worker's token: the process is
// killed, counted (Counts.Timeouts), and a pinned function restarted.
package functions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ggcore/ggcore/core/config"
)

// Environment values of the v1 SDKs' system functions.
const (
	routerARN        = "arn:aws:lambda:::function:GGRouter"
	shadowARN        = "arn:aws:lambda:::function:GGShadowService"
	secretsARN       = "arn:aws:lambda:::function:GGSecretManager:1"
	interfaceVersion = "1.5"
)

// Tokens issues and revokes IPC tokens (ipc.Server does).
type Tokens interface {
	Issue(functionARN string) string
	Revoke(token string)
}

// Spec is a function to run: its configuration and where its code is.
type Spec struct {
	config.Function
	// CodeDir holds the function's code; the process starts in it.
	CodeDir string
}

// Options configure a Supervisor.
type Options struct {
	Logger *slog.Logger
	Tokens Tokens
	// Port is the IPC port (GG_DAEMON_PORT).
	Port int
	// NodeRuntime is the directory of ggcore's Node.js runtime
	// (lambda_nodejs_runtime.js and modules/).
	NodeRuntime string
	// MaxOnDemand bounds the processes of one on-demand function
	// (default 25, v1's maxConcurrentLimit).
	MaxOnDemand int
	// MinBackoff and MaxBackoff bound the wait before a pinned function
	// is restarted (defaults 1 s and 1 min); the wait doubles with each
	// exit and resets after a minute of running.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout stops on-demand processes after this long without work
	// (default 1 min).
	IdleTimeout time.Duration
	// DefaultRunAs is the identity of functions without RunAs when
	// ggcore runs as root (default: DefaultIdentity()).
	DefaultRunAs *config.RunAs
}

// Supervisor runs the functions' processes.
type Supervisor struct {
	o   Options
	log *slog.Logger

	mu    sync.Mutex
	ctx   context.Context
	stop  context.CancelFunc
	fns   map[string]*function
	wg    sync.WaitGroup
	noIso sync.Once        // logged once: isolation unavailable
	noCg  sync.Once        // logged once: memory cgroups unavailable
	procs map[string]*proc // by IPC token
}

// proc is one running process, for Kill.
type proc struct {
	f       *function
	p       *os.Process
	timeout bool // killed because an invocation timed out
}

// function is one function's processes.
type function struct {
	spec     Spec
	ctx      context.Context
	cancel   context.CancelFunc
	running  int
	restarts int // pinned processes started again after an exit
	crashes  int // processes that ended with an error
	timeouts int // processes killed because an invocation timed out
	lastWork time.Time
}

// New makes a supervisor; Set gives it functions to run.
func New(o Options) *Supervisor {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxOnDemand <= 0 {
		o.MaxOnDemand = 25
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(time.Minute, o.MinBackoff)
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Minute
	}
	if o.DefaultRunAs == nil {
		o.DefaultRunAs = DefaultIdentity()
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Supervisor{o: o, log: o.Logger, ctx: ctx, stop: stop, fns: map[string]*function{}, procs: map[string]*proc{}}
	s.wg.Add(1)
	go s.reapIdle()
	return s
}

// Set makes specs the running set: functions no longer listed or changed
// are stopped, new pinned ones started.
func (s *Supervisor) Set(specs []Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[string]bool, len(specs))
	for _, sp := range specs {
		keep[sp.FunctionArn] = true
		if f := s.fns[sp.FunctionArn]; f != nil {
			if sameSpec(f.spec, sp) {
				continue
			}
			f.cancel()
			delete(s.fns, sp.FunctionArn)
		}
		ctx, cancel := context.WithCancel(s.ctx)
		f := &function{spec: sp, ctx: ctx, cancel: cancel}
		s.fns[sp.FunctionArn] = f
		if sp.Pinned {
			s.startLocked(f)
		}
	}
	for arn, f := range s.fns {
		if !keep[arn] {
			f.cancel()
			delete(s.fns, arn)
		}
	}
}

func sameSpec(a, b Spec) bool {
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

// Work tells the supervisor that waiting work items are queued for the
// function: an on-demand function gets processes, up to the bound.
func (s *Supervisor) Work(functionARN string, waiting int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fns[functionARN]
	if f == nil || f.spec.Pinned {
		return
	}
	f.lastWork = time.Now()
	if f.running < min(waiting, s.o.MaxOnDemand) || f.running == 0 {
		s.startLocked(f)
	}
}

// Counts are a function's process counters.
type Counts struct {
	Running  int // processes now
	Restarts int // pinned processes started again after an exit
	Crashes  int // processes that ended with an error
	Timeouts int // processes killed because an invocation timed out
}

// Counts returns the counters of a function (zero if unknown).
func (s *Supervisor) Counts(functionARN string) Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fns[functionARN]
	if f == nil {
		return Counts{}
	}
	return Counts{Running: f.running, Restarts: f.restarts, Crashes: f.crashes, Timeouts: f.timeouts}
}

// Kill kills the process that holds token, because an invocation it
// took ran past the function's Timeout: it is counted as a timeout (not
// a crash), and a pinned function is restarted. An unknown token (the
// process has ended) is ignored.
func (s *Supervisor) Kill(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[token]
	if p == nil || p.timeout {
		return
	}
	p.timeout = true
	p.f.timeouts++
	s.log.Warn("function process killed: an invocation ran past its Timeout", "function", p.f.spec.FunctionArn,
		"pid", p.p.Pid, "timeout", p.f.spec.Timeout, "timeouts", p.f.timeouts)
	_ = p.p.Kill()
}

// Close stops every process and waits for them.
func (s *Supervisor) Close() {
	s.stop()
	s.wg.Wait()
}

// startLocked starts one process of f in the background; s.mu is held.
func (s *Supervisor) startLocked(f *function) {
	f.running++
	s.wg.Add(1)
	go s.run(f)
}

// run keeps one process slot of f: a pinned function's is restarted with
// backoff, an on-demand one's ends with its process.
func (s *Supervisor) run(f *function) {
	defer s.wg.Done()
	backoff := s.o.MinBackoff
	for {
		started := time.Now()
		timedOut, err := s.runOnce(f)
		s.mu.Lock()
		if err != nil && f.ctx.Err() == nil && !timedOut {
			f.crashes++
		}
		if f.ctx.Err() != nil || !f.spec.Pinned {
			f.running--
			s.mu.Unlock()
			return
		}
		f.restarts++
		n := f.restarts
		s.mu.Unlock()
		if time.Since(started) > time.Minute {
			backoff = s.o.MinBackoff
		}
		s.log.Warn("pinned function exited; restarting", "function", f.spec.FunctionArn, "error", err,
			"restarts", n, "in", backoff)
		select {
		case <-f.ctx.Done():
			s.mu.Lock()
			f.running--
			s.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.o.MaxBackoff)
	}
}

// runOnce runs one process of f until it exits or f is stopped (then
// SIGTERM, and SIGKILL after 5 s); timedOut reports that Kill ended it.
func (s *Supervisor) runOnce(f *function) (timedOut bool, err error) {
	sp := f.spec
	token := s.o.Tokens.Issue(sp.FunctionArn)
	defer s.o.Tokens.Revoke(token)
	argv, err := s.command(sp)
	if err != nil {
		s.log.Error("function cannot start", "function", sp.FunctionArn, "error", err)
		<-f.ctx.Done() // a restart would fail the same way; wait for a new spec
		return false, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = sp.CodeDir
	cmd.Env = s.environment(sp, token)
	logw := &lineLogger{log: s.log, fn: sp.Name()}
	cmd.Stdout, cmd.Stderr = logw, logw
	cleanup := s.isolate(cmd, sp)
	defer cleanup()
	err = cmd.Start()
	if err != nil && cmd.SysProcAttr != nil && cmd.SysProcAttr.Cloneflags != 0 &&
		!errors.Is(err, syscall.EACCES) && !errors.Is(err, syscall.ENOENT) {
		s.noIso.Do(func() {
			s.log.Warn("function isolation not available on this host; running functions as plain processes",
				"error", err)
		})
		cmd = rebuild(cmd)
		err = cmd.Start()
	}
	if err != nil {
		if errors.Is(err, syscall.EACCES) && cmd.SysProcAttr != nil && cmd.SysProcAttr.Credential != nil {
			err = fmt.Errorf("%w (the function runs as uid %d gid %d: its code %s and every directory above it must be searchable by it)",
				err, cmd.SysProcAttr.Credential.Uid, cmd.SysProcAttr.Credential.Gid, sp.CodeDir)
		}
		return false, fmt.Errorf("functions: start %s: %w", sp.Name(), err)
	}
	p := &proc{f: f, p: cmd.Process}
	s.mu.Lock()
	s.procs[token] = p
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.procs, token)
		timedOut = p.timeout
		s.mu.Unlock()
	}()
	s.log.Info("function process started", "function", sp.FunctionArn, "pid", cmd.Process.Pid, "pinned", sp.Pinned,
		"uid", credential(cmd, "uid"), "gid", credential(cmd, "gid"))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-f.ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logw.flush()
		return false, nil // stopped, not crashed
	}
	logw.flush()
	s.log.Info("function process exited", "function", sp.FunctionArn, "pid", cmd.Process.Pid, "error", err)
	return false, err
}

// rebuild copies cmd without namespaces or cgroup, for a host that
// refuses them; the process still runs as its uid/gid.
func rebuild(c *exec.Cmd) *exec.Cmd {
	n := exec.Command(c.Path, c.Args[1:]...)
	n.Dir, n.Env, n.Stdout, n.Stderr = c.Dir, c.Env, c.Stdout, c.Stderr
	if a := c.SysProcAttr; a != nil {
		n.SysProcAttr = &syscall.SysProcAttr{Credential: a.Credential, Pdeathsig: a.Pdeathsig}
	}
	return n
}

// credential is cmd's uid or gid for the log: ggcore's own when the
// process keeps it.
func credential(cmd *exec.Cmd, which string) int {
	if a := cmd.SysProcAttr; a != nil && a.Credential != nil {
		if which == "uid" {
			return int(a.Credential.Uid)
		}
		return int(a.Credential.Gid)
	}
	if which == "uid" {
		return os.Geteuid()
	}
	return os.Getegid()
}

// command is the argv of one process of sp.
func (s *Supervisor) command(sp Spec) ([]string, error) {
	if sp.Executable == "" {
		return nil, errors.New("FunctionConfiguration.Executable is not set")
	}
	if sp.IsNodeJS() {
		node, err := findNode(sp.Runtime)
		if err != nil {
			return nil, err
		}
		if s.o.NodeRuntime == "" {
			return nil, errors.New("no Node.js runtime directory")
		}
		return []string{node, filepath.Join(s.o.NodeRuntime, "lambda_nodejs_runtime.js"), "--handler=" + sp.Executable}, nil
	}
	exe := filepath.Join(sp.CodeDir, filepath.Clean("/"+sp.Executable))
	return append([]string{exe}, strings.Fields(sp.ExecArgs)...), nil
}

// findNode finds Node.js under the Lambda runtime's name (nodejs20.x),
// then as node or nodejs.
func findNode(runtime string) (string, error) {
	for _, name := range []string{runtime, "node", "nodejs"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("functions: no Node.js on PATH (%s, node or nodejs)", runtime)
}

// environment is the process's environment: the group's Variables, then
// what the v1 runtimes and SDKs read (which the group cannot override).
func (s *Supervisor) environment(sp Spec, token string) []string {
	env := map[string]string{}
	for k, v := range sp.Variables {
		env[k] = v
	}
	for _, k := range []string{"PATH", "TZ", "LANG", "http_proxy", "https_proxy", "no_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			if _, set := env[k]; !set {
				env[k] = v
			}
		}
	}
	enc := sp.EncodingType
	if !sp.IsNodeJS() {
		enc = "binary"
	}
	region := ""
	if parts := strings.Split(sp.FunctionArn, ":"); len(parts) > 3 {
		region = parts[3]
	}
	fixed := map[string]string{
		"MY_FUNCTION_ARN":                   sp.FunctionArn,
		"AWS_CONTAINER_AUTHORIZATION_TOKEN": token,
		"ROUTER_FUNCTION_ARN":               routerARN,
		"SHADOW_FUNCTION_ARN":               shadowARN,
		"SECRETS_MANAGER_FUNCTION_ARN":      secretsARN,
		"GG_DAEMON_PORT":                    strconv.Itoa(s.o.Port),
		"ENCODING_TYPE":                     enc,
		"GGC_MAX_INTERFACE_VERSION":         interfaceVersion,
		"AWS_LAMBDA_FUNCTION_NAME":          sp.Name(),
		"AWS_REGION":                        region,
		"AWS_DEFAULT_REGION":                region,
		"HOME":                              sp.CodeDir,
	}
	if sp.IsNodeJS() {
		fixed["NODE_PATH"] = strings.Join([]string{sp.CodeDir, filepath.Join(sp.CodeDir, "node_modules"),
			filepath.Join(s.o.NodeRuntime, "modules")}, string(os.PathListSeparator))
	}
	for k, v := range fixed {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// lineLogger writes a process's output to the log, one entry per line.
type lineLogger struct {
	log *slog.Logger
	fn  string
	mu  sync.Mutex
	buf []byte
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	for {
		i := strings.IndexByte(string(l.buf), '\n')
		if i < 0 {
			break
		}
		l.log.Info("function output", "function", l.fn, "line", string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	if len(l.buf) > 64<<10 {
		l.log.Info("function output", "function", l.fn, "line", string(l.buf))
		l.buf = nil
	}
	return len(p), nil
}

func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.log.Info("function output", "function", l.fn, "line", string(l.buf))
		l.buf = nil
	}
}

var _ io.Writer = (*lineLogger)(nil)

// reapIdle stops on-demand processes without work for IdleTimeout.
func (s *Supervisor) reapIdle() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.o.IdleTimeout/4, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		for arn, f := range s.fns {
			if !f.spec.Pinned && f.running > 0 && time.Since(f.lastWork) > s.o.IdleTimeout {
				f.cancel()
				ctx, cancel := context.WithCancel(s.ctx)
				s.fns[arn] = &function{spec: f.spec, ctx: ctx, cancel: cancel, restarts: f.restarts, crashes: f.crashes}
			}
		}
		s.mu.Unlock()
	}
}
