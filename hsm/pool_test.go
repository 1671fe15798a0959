//go:build cgo

package hsm

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/pkcs11"
)

// These tests drive the session pool with a fake module (fake_test.go),
// so they need no token.

// within fails the test if f does not return within a deadline sized for
// a loaded machine: the pool must never leave a caller waiting for good.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still waiting after 30s", what)
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Sequential operations share one session, opened and logged in by Token.
func TestSessionReuse(t *testing.T) {
	f := newFake("a")
	tok := openFakeToken(t, f, "a")
	var used []pkcs11.SessionHandle
	for range 5 {
		if err := tok.session(func(s pkcs11.SessionHandle) error {
			used = append(used, s)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if n, l := f.count("OpenSession"), f.count("Login"); n != 1 || l != 1 {
		t.Errorf("%d sessions opened and %d logins for 5 operations; want 1 and 1", n, l)
	}
	for _, s := range used {
		if s != used[0] {
			t.Errorf("operations used sessions %v; want one session", used)
			break
		}
	}
}

// The pool opens at most maxSessions sessions, or fewer if the token says
// it allows fewer; callers beyond the bound wait and then all succeed.
func TestSessionBound(t *testing.T) {
	tests := []struct {
		maxRW uint // the token's ulMaxRwSessionCount
		want  int
	}{
		{0, maxSessions},               // no limit
		{^uint(0), maxSessions},        // CK_UNAVAILABLE_INFORMATION
		{3, 3},                         // the token's limit
		{maxSessions + 5, maxSessions}, // more than ggcore keeps
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.maxRW), func(t *testing.T) {
			f := newFake("a")
			f.tokens[0].info.MaxRwSessionCount = tc.maxRW
			tok := openFakeToken(t, f, "a")
			if cap(tok.sem) != tc.want {
				t.Fatalf("bound %d; want %d", cap(tok.sem), tc.want)
			}
			var inside, most atomic.Int32
			release := make(chan struct{})
			var wg sync.WaitGroup
			errs := make(chan error, tc.want+8)
			for range tc.want + 8 {
				wg.Go(func() {
					errs <- tok.session(func(pkcs11.SessionHandle) error {
						n := inside.Add(1)
						for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
						}
						<-release
						inside.Add(-1)
						return nil
					})
				})
			}
			waitFor(t, "the bound's worth of operations running", func() bool { return inside.Load() == int32(tc.want) })
			close(release)
			within(t, "callers beyond the bound", wg.Wait)
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
			if int(most.Load()) != tc.want || f.peak != tc.want {
				t.Errorf("%d operations and %d sessions at once; want %d", most.Load(), f.peak, tc.want)
			}
			if len(tok.idle) != tc.want {
				t.Errorf("%d idle sessions afterwards; want %d", len(tok.idle), tc.want)
			}
		})
	}
}

// A session the module reports gone is closed and not reused; other
// errors leave the session in the pool.
func TestSessionGone(t *testing.T) {
	tests := []struct {
		err  error
		gone bool
	}{
		{ckr(pkcs11.CKR_SESSION_HANDLE_INVALID), true},
		{ckr(pkcs11.CKR_SESSION_CLOSED), true},
		{ckr(pkcs11.CKR_DEVICE_REMOVED), true},
		{fmt.Errorf("C_Sign: %w", ckr(pkcs11.CKR_TOKEN_NOT_PRESENT)), true},
		{fmt.Errorf("C_Sign: %w", ckr(pkcs11.CKR_FUNCTION_FAILED)), false},
		{errors.New("not a PKCS#11 error"), false},
	}
	for _, tc := range tests {
		t.Run(tc.err.Error(), func(t *testing.T) {
			f := newFake("a")
			tok := openFakeToken(t, f, "a")
			var first pkcs11.SessionHandle
			err := tok.session(func(s pkcs11.SessionHandle) error {
				first = s
				return tc.err
			})
			if !errors.Is(err, tc.err) {
				t.Fatalf("session = %v; want the operation's error %v", err, tc.err)
			}
			var next pkcs11.SessionHandle
			if err := tok.session(func(s pkcs11.SessionHandle) error { next = s; return nil }); err != nil {
				t.Fatalf("operation after %v: %v", tc.err, err)
			}
			if (next != first) != tc.gone {
				t.Errorf("next operation used session %d after %d; want a new session: %v", next, first, tc.gone)
			}
			wantOpened, wantLogins := 1, 1
			if tc.gone {
				// Closing the token's only session logged it out: the
				// new session logs in again with the kept PIN.
				wantOpened, wantLogins = 2, 2
			}
			if n, l := f.count("OpenSession"), f.count("Login"); n != wantOpened || l != wantLogins {
				t.Errorf("%d sessions opened, %d logins; want %d and %d", n, l, wantOpened, wantLogins)
			}
			if n := f.open(); n != 1 {
				t.Errorf("%d sessions open; want 1", n)
			}
		})
	}
}

// A session that cannot be opened or logged in fails its operation with
// the reason, leaks neither the session nor its place in the bound, and
// the next operation works.
func TestSessionOpenFailure(t *testing.T) {
	f := newFake("a")
	f.tokens[0].info.MaxRwSessionCount = 1
	tok := openFakeToken(t, f, "a")
	// Lose the one session, so the next operations open one.
	_ = tok.session(func(pkcs11.SessionHandle) error { return ckr(pkcs11.CKR_DEVICE_REMOVED) })
	f.failNext("OpenSession", ckr(pkcs11.CKR_DEVICE_ERROR))
	f.failNext("Login", ckr(pkcs11.CKR_PIN_LOCKED))
	ran := false
	op := func(pkcs11.SessionHandle) error { ran = true; return nil }
	for _, want := range []string{`token "a": C_OpenSession`, `token "a": log in: the user PIN is locked`} {
		var err error
		within(t, "a failing operation", func() { err = tok.session(op) })
		if err == nil || !strings.Contains(err.Error(), want) || ran {
			t.Errorf("operation = %v (ran: %v); want an error containing %q", err, ran, want)
		}
		if n := f.open(); n != 0 {
			t.Errorf("%d sessions left open by a failure", n)
		}
	}
	var err error
	within(t, "an operation after failures with a bound of 1", func() { err = tok.session(op) })
	if err != nil || !ran {
		t.Errorf("operation after failures = %v (ran: %v); want it to run", err, ran)
	}
}

// Closing the module waits for the operation in flight, then closes every
// session; later operations fail with errClosed.
func TestCloseWaitsForOperations(t *testing.T) {
	f := newFake("a")
	mod := fakeModuleHandle(t, f)
	tok, err := mod.Token("a", "1234")
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	opDone := make(chan error, 1)
	go func() {
		opDone <- tok.session(func(pkcs11.SessionHandle) error {
			close(started)
			<-release
			return nil
		})
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- mod.Close() }()
	waitFor(t, "Close marking the token closed", func() bool {
		tok.mu.Lock()
		defer tok.mu.Unlock()
		return tok.closed
	})
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while an operation was in flight", err)
	default:
	}
	if err := tok.session(func(pkcs11.SessionHandle) error { return nil }); !errors.Is(err, errClosed) || !strings.Contains(err.Error(), "fake.so") {
		t.Errorf("operation during Close = %v; want errClosed naming the module", err)
	}
	close(release)
	if err := <-opDone; err != nil {
		t.Errorf("the operation in flight = %v; want it to finish", err)
	}
	within(t, "Close", func() { err = <-closed })
	if err != nil {
		t.Fatal(err)
	}
	if n := f.open(); n != 0 {
		t.Errorf("%d sessions open after Close", n)
	}
	if n := f.count("Finalize"); n != 1 {
		t.Errorf("C_Finalize called %d times; want 1", n)
	}
	if _, err := mod.Token("a", "1234"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Token after Close = %v; want an error saying it is closed", err)
	}
}
