//go:build cgo

package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

func TestOpenModuleRefusals(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ path, want string }{
		{"", "no PKCS#11 module"},
		{"/nonexistent/libp11.so", "/nonexistent/libp11.so: stat /nonexistent/libp11.so: no such file"},
		{"./nonexistent.so", "nonexistent.so: no such file"},
		{"libno-such-pkcs11-module.so", "libno-such-pkcs11-module.so: cannot load it as a PKCS#11 module"},
		{"/etc/hostname", "/etc/hostname: cannot load it as a PKCS#11 module"},
		{dir, "is a directory"},
	}
	for _, tc := range tests {
		if _, err := OpenModule(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenModule(%q) = %v; want an error containing %q", tc.path, err, tc.want)
		}
	}
	// A shared library that is no PKCS#11 module (it has no
	// C_GetFunctionList).
	if _, err := os.Stat("/lib/x86_64-linux-gnu/libz.so.1"); err == nil {
		if _, err := OpenModule("/lib/x86_64-linux-gnu/libz.so.1"); err == nil || !strings.Contains(err.Error(), "cannot load it as a PKCS#11 module") {
			t.Errorf("OpenModule(libz) = %v; want a refusal", err)
		}
	}
	modules.Lock()
	n := len(modules.byPath)
	modules.Unlock()
	if n != 0 {
		t.Errorf("failed OpenModule calls left %d modules registered", n)
	}
}

// TestModuleSharedAcrossOpens: two handles on one module share its
// initialisation and login; closing one leaves the other working; after
// the last Close, keys fail cleanly.
func TestModuleSharedAcrossOpens(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	first, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenModule(filepath.Join(filepath.Dir(tt.Module), ".", filepath.Base(tt.Module)))
	if err != nil {
		t.Fatal(err)
	}
	if second.m != first.m {
		t.Fatal("a second OpenModule of the same path loaded the module again")
	}
	tok, err := first.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.Generate("shared", nil, keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := second.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatalf("Token through the second handle: %v", err)
	}
	if _, err := tok2.Key("shared", nil); err != nil {
		t.Errorf("key through the second handle: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Errorf("second Close of a handle: %v", err)
	}
	if _, err := first.Token(tt.Label, tt.PIN); err == nil {
		t.Error("Token through a closed handle: no error")
	}
	digest := sha256.Sum256([]byte("m"))
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Errorf("sign after the other handle closed: %v", err)
	}
	if _, err := second.Token(tt.Label, tt.PIN); err != nil {
		t.Errorf("Token after the other handle closed: %v", err)
	}
	if err := second.Close(); err != nil {
		t.Fatalf("last Close: %v", err)
	}
	if _, err := k.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, errClosed) {
		t.Errorf("sign after the last Close = %v; want an error saying the module is closed", err)
	}
	// A new OpenModule initialises the module afresh.
	third, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	tok3, err := third.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k3, err := tok3.Key("shared", nil)
	if err != nil {
		t.Fatal(err)
	}
	if sig, err := k3.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil || !ecdsa.VerifyASN1(k.Public().(*ecdsa.PublicKey), digest[:], sig) {
		t.Errorf("sign after reopening: %v", err)
	}
}

// TestCloseWhileSigning: closing the module under running signers waits
// for the signatures in flight; later ones fail with a clear error.
func TestCloseWhileSigning(t *testing.T) {
	tt := testtool.NewSoftHSMToken(t, "ggcore-test", "1234")
	m, err := OpenModule(tt.Module)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := m.Token(tt.Label, tt.PIN)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tok.Generate("k", nil, keyspec.ECP256, keyspec.Sign)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var signed sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		signed.Add(1)
		wg.Go(func() {
			first := true
			for {
				digest := sha256.Sum256([]byte("m"))
				_, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
				if first {
					signed.Done()
					first = false
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	signed.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, errClosed) || !strings.Contains(err.Error(), "closed") {
			t.Errorf("sign during Close = %v; want only 'module is closed' errors", err)
		}
	}
}

// initModule and the last Close initialise and finalise a module once,
// leaving one that other code initialised for that code to finalise (a
// fake module: no token needed).
func TestModuleInitAndClose(t *testing.T) {
	tests := []struct {
		name          string
		initErr       error
		finalizeErr   error
		wantErr       string // from initModule
		wantFinalize  int    // C_Finalize calls at the last Close
		wantCloseErr  string // from the last Close
		wantDestroyed int
	}{
		{name: "initialised here", wantFinalize: 1, wantDestroyed: 1},
		{name: "initialised by other code", initErr: ckr(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED), wantFinalize: 0, wantDestroyed: 1},
		{name: "C_Initialize fails", initErr: ckr(pkcs11.CKR_GENERAL_ERROR), wantErr: "fake.so: C_Initialize", wantDestroyed: 1},
		{name: "C_Finalize fails", finalizeErr: ckr(pkcs11.CKR_GENERAL_ERROR), wantFinalize: 1, wantCloseErr: "fake.so: C_Finalize", wantDestroyed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake("a")
			if tc.initErr != nil {
				f.failNext("Initialize", tc.initErr)
			}
			if tc.finalizeErr != nil {
				f.failNext("Finalize", tc.finalizeErr)
			}
			m, err := initModule("fake.so", f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !isCode(err, pkcs11.CKR_GENERAL_ERROR) {
					t.Errorf("initModule = %v; want an error containing %q and the CKR code", err, tc.wantErr)
				}
				if n := f.count("Destroy"); n != tc.wantDestroyed {
					t.Errorf("failed initialisation unloaded the module %d times; want %d", n, tc.wantDestroyed)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			mod := &Module{m: m}
			if _, err := mod.Token("a", "1234"); err != nil {
				t.Fatal(err)
			}
			err = mod.Close()
			if tc.wantCloseErr == "" && err != nil || tc.wantCloseErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantCloseErr)) {
				t.Errorf("Close = %v; want %q", err, tc.wantCloseErr)
			}
			if n := f.count("Finalize"); n != tc.wantFinalize {
				t.Errorf("C_Finalize called %d times; want %d", n, tc.wantFinalize)
			}
			if n := f.count("Destroy"); n != tc.wantDestroyed {
				t.Errorf("module unloaded %d times; want %d", n, tc.wantDestroyed)
			}
			if n := f.open(); n != 0 {
				t.Errorf("%d sessions open after Close", n)
			}
		})
	}
}
