package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/ggcore/ggcore/core/config"
	"github.com/ggcore/ggcore/core/functions"
	"github.com/ggcore/ggcore/core/ipc"
	"github.com/ggcore/ggcore/core/secrets"
	"github.com/ggcore/ggcore/runtime/nodejs"
)

// localFunctions runs the group's local functions: the v1 IPC server on
// 127.0.0.1:ggDaemonPort and the supervisor of their processes. It
// exists once the group has local functions.
type localFunctions struct {
	ipc  *ipc.Server
	sup  *functions.Supervisor
	stop context.CancelFunc
	done chan struct{}

	mu    sync.Mutex
	byARN map[string]config.Function
}

// functionARNs are the ARNs of g's local functions (none if they cannot
// be read: ParseGroup has refused such a group already).
func functionARNs(g *config.Group) []string {
	fs, _ := g.LocalFunctions()
	arns := make([]string, len(fs))
	for i, f := range fs {
		arns[i] = f.FunctionArn
	}
	return arns
}

// functionRunnable reports whether arn is a local function of g that
// ggcore can run (it has an Executable).
func functionRunnable(g *config.Group, arn string) bool {
	fs, _ := g.LocalFunctions()
	for _, f := range fs {
		if f.FunctionArn == arn {
			return f.Executable != ""
		}
	}
	return false
}

// codeDir is where a function's code is:
// <writeDirectory>/deployment/lambda/<FunctionArn>, as v1.
func codeDir(cfg *config.Config, arn string) string {
	return filepath.Join(cfg.WriteDirectory, "deployment", "lambda", arn)
}

// switchFunctions makes the running functions g's, starting the IPC
// server the first time g has any. c.groupMu is held (or start runs).
func (c *core) switchFunctions(g *config.Group) error {
	fs, err := g.LocalFunctions()
	if err != nil {
		return err
	}
	if c.fn == nil {
		if len(fs) == 0 {
			return nil
		}
		if err := c.startFunctions(); err != nil {
			return err
		}
	}
	refs, err := functionCode(g)
	if err != nil {
		return err
	}
	specs := make([]functions.Spec, 0, len(fs))
	known := make([]ipc.Function, 0, len(fs))
	byARN := make(map[string]config.Function, len(fs))
	var runnable []string
	for _, f := range fs {
		dir := functionDir(c.cfg, refs, f.FunctionArn)
		if !f.IsNodeJS() {
			// The image's data partition is mounted noexec: executables run
			// from a copy in RAM.
			if run, err := functions.RunnableCode(dir, runnableRoot(c.cfg)); err != nil {
				c.log.Error("function code cannot be made executable", "function", f.FunctionArn, "error", err)
			} else if run != dir {
				dir = run
				runnable = append(runnable, run)
			}
		}
		specs = append(specs, functions.Spec{Function: f, CodeDir: dir})
		known = append(known, ipc.Function{ARN: f.FunctionArn, JSON: f.EncodingType == "json" && f.IsNodeJS(), Timeout: f.Timeout})
		byARN[f.FunctionArn] = f
	}
	c.fn.mu.Lock()
	c.fn.byARN = byARN
	c.fn.mu.Unlock()
	c.fn.ipc.SetFunctions(known)
	c.fn.sup.Set(specs)
	functions.PruneRunnable(runnableRoot(c.cfg), runnable)
	return nil
}

// runnableRoot is where executables whose code is on a noexec file
// system are copied to run: under /run/ggcore (RAM) as root, else under
// the temporary directory; one directory per write directory, so that
// cores sharing a host keep to their own.
func runnableRoot(cfg *config.Config) string {
	sum := sha256.Sum256([]byte(cfg.WriteDirectory))
	name := "code-" + hex.EncodeToString(sum[:4])
	if os.Geteuid() == 0 {
		return filepath.Join("/run/ggcore", name)
	}
	return filepath.Join(os.TempDir(), "ggcore-"+strconv.Itoa(os.Geteuid()), name)
}

// startFunctions installs the Node.js runtime, binds the IPC port and
// starts the server and the supervisor.
func (c *core) startFunctions() error {
	port := c.cfg.CoreThing.GGDaemonPort
	if port == 0 {
		port = config.DefaultGGDaemonPort
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("coreThing.ggDaemonPort: listen on %s for the local functions' IPC: %w", addr, err)
	}
	if err := searchable(c.cfg.WriteDirectory); err != nil {
		ln.Close()
		return err
	}
	runtimeDir := filepath.Join(c.cfg.WriteDirectory, "runtime", "nodejs")
	if err := nodejs.Install(runtimeDir); err != nil {
		ln.Close()
		return err
	}
	fn := &localFunctions{done: make(chan struct{})}
	log := c.log.With("component", "functions")
	fn.ipc = ipc.New(ipc.Options{Logger: log, Publisher: c.broker, Secrets: secretReader{c: c, fn: fn},
		OnWork:    func(arn string, waiting int) { fn.sup.Work(arn, waiting) },
		OnTimeout: func(_, token string) { fn.sup.Kill(token) }})
	fn.sup = functions.New(functions.Options{Logger: log, Tokens: fn.ipc, Port: port, NodeRuntime: runtimeDir})
	ctx, stop := context.WithCancel(context.Background())
	fn.stop = stop
	go func() {
		defer close(fn.done)
		if err := fn.ipc.Serve(ctx, ln); err != nil {
			log.Error("local functions' IPC stopped", "error", err)
		}
	}()
	c.broker.SetFunctionSink(fn.ipc.Deliver)
	c.fn = fn
	log.Info("local functions' IPC serving", "addr", addr)
	return nil
}

// searchable lets other users search (not list) the write directory and
// its deployment directory when ggcore runs as root: functions run as
// their own users and must reach their code under
// <writeDirectory>/deployment/code and the Node.js runtime under
// <writeDirectory>/runtime. What else is there stays as private as its own
// mode makes it (secrets, group.json, keys: 0700/0600).
func searchable(write string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	for _, d := range []string{write, filepath.Join(write, "deployment")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fmt.Errorf("functions: %w", err)
		}
		info, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("functions: %w", err)
		}
		if perm := info.Mode().Perm(); perm&0o011 != 0o011 {
			if err := os.Chmod(d, perm|0o011); err != nil {
				return fmt.Errorf("functions: let the functions' users reach their code: %w", err)
			}
		}
	}
	return nil
}

// stopFunctions stops the functions' processes, then the IPC server.
func (c *core) stopFunctions() {
	if c.fn == nil {
		return
	}
	c.fn.sup.Close()
	c.fn.stop()
	<-c.fn.done
}

// secretReader serves GetSecretValue from the secrets store, to the
// functions whose ResourceAccessPolicies name the secret's resource.
type secretReader struct {
	c  *core
	fn *localFunctions
}

func (r secretReader) ReadSecret(functionARN, secretID, versionStage string) (ipc.Secret, error) {
	r.fn.mu.Lock()
	f := r.fn.byARN[functionARN]
	r.fn.mu.Unlock()
	allowed := make([]string, 0, len(f.ResourceAccessPolicies))
	for _, p := range f.ResourceAccessPolicies {
		allowed = append(allowed, p.ResourceId)
	}
	if r.c.secrets == nil {
		return ipc.Secret{}, ipc.ErrSecretNotFound
	}
	s, err := r.c.secrets.Read(functionARN, allowed, secretID, "", versionStage)
	switch {
	case errors.Is(err, secrets.ErrDenied):
		return ipc.Secret{}, fmt.Errorf("%w: %w", ipc.ErrSecretDenied, err)
	case errors.Is(err, secrets.ErrNotFound):
		return ipc.Secret{}, fmt.Errorf("%w: %w", ipc.ErrSecretNotFound, err)
	case err != nil:
		return ipc.Secret{}, err
	}
	return ipc.Secret{ARN: s.ARN, Name: s.Name, VersionID: s.VersionID, VersionStages: s.VersionStages,
		SecretString: s.SecretString, SecretBinary: s.SecretBinary, CreatedDate: s.CreatedDate}, nil
}
