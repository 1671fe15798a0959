//go:build cgo

package hsm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/pkcs11"
)

// modules is the process's registry of loaded PKCS#11 modules by cleaned
// path. It is the package's one piece of package-level state, and has to
// be: PKCS#11 is process-global by nature. C_Initialize may run once per
// module per process (a second one answers
// CKR_CRYPTOKI_ALREADY_INITIALIZED), logins belong to the token for the
// whole process, and C_Finalize ends every session and login of every
// user at once. So every OpenModule of a path shares one initialisation,
// counted by references, and the last Close finalises it.
var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: make(map[string]*module)}

// module is one initialised PKCS#11 module, shared by every Module handle
// opened on its path.
type module struct {
	path  string
	ctx   cryptoki
	owned bool // this package ran C_Initialize (and so runs C_Finalize)
	refs  int  // open Module handles; guarded by modules

	mu     sync.Mutex
	closed bool
	tokens map[string]*Token // by label: one login state per token
}

// Module is a handle on a loaded, initialised PKCS#11 module. Handles on
// the same path share the module, its logins and its sessions.
type Module struct {
	m      *module
	closed atomic.Bool
}

// OpenModule loads the PKCS#11 module at path and initialises it, once
// per process however many handles are open on it. A path without a
// slash is a library name for the dynamic loader to find.
func OpenModule(path string) (*Module, error) {
	if path == "" {
		return nil, errors.New("hsm: no PKCS#11 module path given")
	}
	if strings.Contains(path, "/") {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("hsm: module %s: %w", path, err)
		}
		path = abs // Abs cleans
	}
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[path]; m != nil {
		m.refs++
		return &Module{m: m}, nil
	}
	if strings.Contains(path, "/") {
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("hsm: module %s: %w", path, err)
		}
		if info.IsDir() {
			return nil, fmt.Errorf("hsm: module %s: is a directory, not a PKCS#11 module", path)
		}
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("hsm: module %s: cannot load it as a PKCS#11 module (dlopen failed or it has no C_GetFunctionList)", path)
	}
	m, err := initModule(path, ctx)
	if err != nil {
		return nil, err
	}
	modules.byPath[path] = m
	return &Module{m: m}, nil
}

// initModule runs C_Initialize on a loaded module and returns it with one
// reference. A module other code in this process initialised already is
// used as it is, and left for that code to finalise. On failure the
// module is unloaded.
func initModule(path string, ctx cryptoki) (*module, error) {
	owned := true
	if err := ctx.Initialize(); err != nil {
		if !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, fmt.Errorf("hsm: module %s: C_Initialize: %w", path, err)
		}
		owned = false // initialised by other code in this process: leave finalising to it
	}
	return &module{path: path, ctx: ctx, owned: owned, refs: 1, tokens: make(map[string]*Token)}, nil
}

// Close releases this handle. The last handle on a module waits for the
// operations in flight, closes every session and finalises the module;
// tokens and keys from it fail from then on. Close is safe to call more
// than once.
func (mod *Module) Close() error {
	if mod.closed.Swap(true) {
		return nil
	}
	modules.Lock()
	defer modules.Unlock()
	m := mod.m
	if m.refs--; m.refs > 0 {
		return nil
	}
	delete(modules.byPath, m.path)
	return m.shutdown()
}

// shutdown ends a module nothing holds any more: it waits for the
// operations in flight, closes every session, finalises the module if
// this package initialised it, and unloads it.
func (m *module) shutdown() error {
	m.mu.Lock()
	m.closed = true
	tokens := m.tokens
	m.tokens = nil
	m.mu.Unlock()
	for _, t := range tokens {
		t.shutdown()
	}
	var err error
	if m.owned {
		if e := m.ctx.Finalize(); e != nil {
			err = fmt.Errorf("hsm: module %s: C_Finalize: %w", m.path, e)
		}
	}
	m.ctx.Destroy()
	return err
}
