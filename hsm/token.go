//go:build cgo

package hsm

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"
)

// maxSessions bounds the sessions a Token keeps open (fewer if the token
// says it allows fewer); callers beyond it wait for a free one.
const maxSessions = 16

// Token is a logged-in token with a pool of sessions. It is safe for
// concurrent use: each operation takes a session of its own for its
// duration, since a PKCS#11 session runs one operation at a time.
type Token struct {
	m     *module
	ctx   cryptoki
	slot  uint
	label string
	pin   string // kept to log in again if the token logs out; never printed

	// sem holds one value per session an operation holds or may open:
	// its capacity bounds the sessions.
	sem chan struct{}

	mu     sync.Mutex
	idle   []pkcs11.SessionHandle
	closed bool
	busy   sync.WaitGroup // operations in flight, awaited by shutdown

	// gen serialises Generate and Destroy, so that the check for an
	// existing label or ID and the creation stay one step in this
	// process.
	gen sync.Mutex
}

// Token finds the token labelled label (by label: slot numbers change)
// and logs in as the user with pin, once per token per process: later
// calls for the same label share the first one's login and sessions.
func (mod *Module) Token(label, pin string) (*Token, error) {
	m := mod.m
	if mod.closed.Load() {
		return nil, fmt.Errorf("hsm: module %s: token %q: the module handle is closed", m.path, label)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("hsm: module %s: token %q: the module is closed", m.path, label)
	}
	if t := m.tokens[label]; t != nil {
		if t.pin != pin {
			return nil, fmt.Errorf("hsm: token %q: %w (the token is already logged in with another PIN)", label, ErrWrongPIN)
		}
		return t, nil
	}
	slots, err := m.ctx.GetSlotList(true)
	if err != nil {
		return nil, fmt.Errorf("hsm: module %s: C_GetSlotList: %w", m.path, err)
	}
	var found []string
	var matches []uint
	var match pkcs11.TokenInfo
	for _, slot := range slots {
		info, err := m.ctx.GetTokenInfo(slot)
		if err != nil || info.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0 {
			continue
		}
		l := strings.TrimRight(info.Label, " \x00")
		if l == label {
			matches = append(matches, slot)
			match = info
		} else {
			found = append(found, fmt.Sprintf("%q", l))
		}
	}
	switch len(matches) {
	case 0:
		slices.Sort(found)
		have := "none"
		if len(found) > 0 {
			have = strings.Join(found, ", ")
		}
		return nil, fmt.Errorf("hsm: %w labelled %q in module %s (tokens found: %s)", ErrTokenAbsent, label, m.path, have)
	case 1:
	default:
		return nil, fmt.Errorf("hsm: module %s: %d tokens are labelled %q (slots %v): give each token its own label", m.path, len(matches), label, matches)
	}
	n := maxSessions
	if c := match.MaxRwSessionCount; c > 0 && c < uint(n) { // 0: no limit; ^0: unknown
		n = int(c)
	}
	t := &Token{m: m, ctx: m.ctx, slot: matches[0], label: label, pin: pin, sem: make(chan struct{}, n)}
	if pin == "" && match.Flags&pkcs11.CKF_LOGIN_REQUIRED != 0 {
		return nil, fmt.Errorf("hsm: token %q: the token needs the user PIN to log in, and none was given", label)
	}
	// The first session logs in: a wrong PIN fails here, not at the
	// first signature.
	s, err := t.openSession()
	if err != nil {
		return nil, err
	}
	t.idle = append(t.idle, s)
	m.tokens[label] = t
	return t, nil
}

// openSession opens a read-write session and logs the token in as the
// user unless it already is (logins are per token, so usually only the
// first session logs in; later ones find the token logged in).
func (t *Token) openSession() (pkcs11.SessionHandle, error) {
	s, err := t.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, fmt.Errorf("hsm: token %q: C_OpenSession: %w", t.label, err)
	}
	if err := t.login(s); err != nil {
		_ = t.ctx.CloseSession(s)
		return 0, err
	}
	return s, nil
}

// login logs the token in as the user on session s, unless the token is
// logged in already or no PIN was given (the token needs none).
func (t *Token) login(s pkcs11.SessionHandle) error {
	if info, err := t.ctx.GetSessionInfo(s); err == nil &&
		(info.State == pkcs11.CKS_RW_USER_FUNCTIONS || info.State == pkcs11.CKS_RO_USER_FUNCTIONS) {
		return nil
	}
	if t.pin == "" {
		return nil // no login required and no PIN given
	}
	return loginError(t.label, t.ctx.Login(s, pkcs11.CKU_USER, t.pin))
}

// session runs f with a session of its own: an idle one, a new one while
// fewer than the bound are open, or else the next one freed. No lock is
// held while f runs. A session the token reports gone is dropped.
func (t *Token) session(f func(pkcs11.SessionHandle) error) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return fmt.Errorf("module %s: %w", t.m.path, errClosed)
	}
	t.busy.Add(1)
	t.mu.Unlock()
	defer t.busy.Done()

	t.sem <- struct{}{}
	defer func() { <-t.sem }()
	t.mu.Lock()
	var s pkcs11.SessionHandle
	reuse := len(t.idle) > 0
	if reuse {
		s = t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
	}
	t.mu.Unlock()
	if !reuse {
		var err error
		if s, err = t.openSession(); err != nil {
			return err
		}
	}
	err := f(s)
	if isSessionGone(err) {
		_ = t.ctx.CloseSession(s)
		return err
	}
	t.mu.Lock()
	t.idle = append(t.idle, s)
	t.mu.Unlock()
	return err
}

// shutdown waits for the operations in flight and closes the sessions;
// later operations fail with errClosed.
func (t *Token) shutdown() {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	t.busy.Wait()
	t.mu.Lock()
	for _, s := range t.idle {
		_ = t.ctx.CloseSession(s)
	}
	t.idle = nil
	t.mu.Unlock()
}
