//go:build cgo

package hsm

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// TestTokenAbsentListsLabels: the error lists every token the module has.
func TestTokenAbsentListsLabels(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "first", "1234")
	testtool.NewSoftHSMToken(t, "second", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Token("third", "1234")
	if !errors.Is(err, ErrTokenAbsent) || !strings.Contains(err.Error(), `tokens found: "first", "second"`) {
		t.Errorf("absent token = %v; want ErrTokenAbsent listing first and second", err)
	}
	if _, err := m.Token("second", "1234"); err != nil {
		t.Errorf("second token: %v", err)
	}
}

// TestWrongPIN: a wrong PIN is ErrWrongPIN, never printed, and the right
// PIN works afterwards.
func TestWrongPIN(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "pin-test", "5678")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, pin := range []string{"98765432", "qq"} {
		_, err = m.Token(tt.Label, pin)
		if !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), pin) {
			t.Errorf("wrong PIN = %v; want ErrWrongPIN without the PIN", err)
		}
	}
	if _, err := m.Token(tt.Label, ""); err == nil || !strings.Contains(err.Error(), "needs the user PIN") {
		t.Errorf("no PIN = %v; want a refusal", err)
	}
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("right PIN after wrong ones: %v", err)
	}
	if _, err := tok.Generate("k", nil, keyspec.ECP256, keyspec.Sign); err != nil {
		t.Errorf("generate after login: %v", err)
	}
	if _, err := m.Token(tt.Label, "98765432"); !errors.Is(err, ErrWrongPIN) || strings.Contains(err.Error(), "98765432") {
		t.Errorf("another PIN for a logged-in token = %v; want ErrWrongPIN without the PIN", err)
	}
}

// TestAlreadyLoggedIn: a token this process logged in already (here
// behind the package's back) is logged in, not an error; two Token calls
// share one token.
func TestAlreadyLoggedIn(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	slots, err := m.m.ctx.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.m.ctx.OpenSession(slots[0], pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	defer m.m.ctx.CloseSession(s)
	if err := m.m.ctx.Login(s, pkcs11.CKU_USER, tt.PIN); err != nil {
		t.Fatal(err)
	}
	first, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("Token on a logged-in token: %v", err)
	}
	second, err := m.Token(tt.Label, tt.PIN)
	if err != nil || second != first {
		t.Errorf("second Token = %p, %v; want the first one (%p)", second, err, first)
	}
	if _, err := second.Generate("k", nil, keyspec.ECP256, keyspec.Sign); err != nil {
		t.Error(err)
	}
}

// TestConcurrentSigners: 64 goroutines sign at once with two keys; the
// session pool stays within its bound.
func TestConcurrentSigners(t *testing.T) {
	_, _, tok := openToken(t)
	var keys []*Key
	for _, kt := range []keyspec.Type{keyspec.ECP256, keyspec.RSA2048} {
		k, err := tok.Generate("busy-"+string(kt), nil, kt, keyspec.Sign)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			k := keys[i%2]
			for j := range 4 {
				digest := sha256.Sum256([]byte{byte(i), byte(j)})
				sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
				if err == nil {
					err = verify(k.Public(), crypto.SHA256, digest[:], sig, false)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	tok.mu.Lock()
	open := len(tok.idle)
	tok.mu.Unlock()
	if open < 2 || open > maxSessions {
		t.Errorf("%d sessions open after 64 concurrent signers; want 2..%d", open, maxSessions)
	}
}
