package tpm

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestCounterByDevice drives the counter through the device-level
// functions ggboot uses: absent on a fresh TPM, defined on the first
// advance, never lowered, bounded.
func TestCounterByDevice(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")

	v, defined, err := ReadCounter(sw.Device)
	if err != nil || defined || v != 0 {
		t.Fatalf("fresh TPM: ReadCounter = %d, %t, %v; want 0, false, nil", v, defined, err)
	}
	// Advancing to 0 needs no counter: nothing is defined.
	if v, err := AdvanceCounter(sw.Device, 0); err != nil || v != 0 {
		t.Fatalf("AdvanceCounter(0) = %d, %v; want 0, nil", v, err)
	}
	if _, defined, _ := ReadCounter(sw.Device); defined {
		t.Fatal("AdvanceCounter(0) defined the counter; want nothing written")
	}

	steps := []struct {
		to, want uint64
	}{
		{3, 3},
		{3, 3},
		{2, 3}, // never lowered
		{7, 7},
	}
	for _, s := range steps {
		v, err := AdvanceCounter(sw.Device, s.to)
		if err != nil || v != s.want {
			t.Fatalf("AdvanceCounter(%d) = %d, %v; want %d", s.to, v, err, s.want)
		}
		got, defined, err := ReadCounter(sw.Device)
		if err != nil || !defined || got != s.want {
			t.Fatalf("after AdvanceCounter(%d): ReadCounter = %d, %t, %v; want %d, true", s.to, got, defined, err, s.want)
		}
	}

	if _, err := AdvanceCounter(sw.Device, MaxCounterTarget+1); err == nil {
		t.Fatalf("AdvanceCounter(%d) succeeded; want refused", MaxCounterTarget+1)
	}
	if v, _, _ := ReadCounter(sw.Device); v != 7 {
		t.Fatalf("a refused advance moved the counter to %d; want 7", v)
	}
}

// TestCounterSharedConnection uses the counter through a TPM that also
// holds keys, as ggcore does, and checks that deleting the counter
// cannot lower it: the TPM starts a counter defined again above every
// value a counter of it ever had.
func TestCounterSharedConnection(t *testing.T) {
	tp, _ := openSW(t, "unix")
	if v, err := tp.AdvanceCounter(2); err != nil || v != 2 {
		t.Fatalf("AdvanceCounter(2) = %d, %v; want 2", v, err)
	}

	// Someone with the (empty) owner authorization deletes the counter.
	tp.mu.Lock()
	name, err := tp.counterName()
	if err == nil {
		_, err = tpm2.NVUndefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: name},
		}.Execute(tp.tr)
	}
	tp.mu.Unlock()
	if err != nil {
		t.Fatalf("TPM2_NV_UndefineSpace: %v", err)
	}
	if v, defined, err := tp.ReadCounter(); err != nil || defined || v != 0 {
		t.Fatalf("after delete: ReadCounter = %d, %t, %v; want 0, false", v, defined, err)
	}
	v, err := tp.AdvanceCounter(1)
	if err != nil {
		t.Fatalf("AdvanceCounter(1) after delete: %v", err)
	}
	if v < 2 {
		t.Fatalf("a deleted and redefined counter restarted at %d; want >= 2 (its old value)", v)
	}
}

// TestCounterForeignIndex refuses an index at CounterIndex that is not a
// counter, rather than trusting or overwriting it.
func TestCounterForeignIndex(t *testing.T) {
	tp, _ := openSW(t, "unix")
	tp.mu.Lock()
	_, err := tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
			NVIndex:    tpm2.TPMHandle(CounterIndex),
			NameAlg:    tpm2.TPMAlgSHA256,
			Attributes: tpm2.TPMANV{NT: tpm2.TPMNTOrdinary, OwnerWrite: true, OwnerRead: true, AuthRead: true, AuthWrite: true, NoDA: true},
			DataSize:   8,
		}),
	}.Execute(tp.tr)
	tp.mu.Unlock()
	if err != nil {
		t.Fatalf("TPM2_NV_DefineSpace: %v", err)
	}
	if _, _, err := tp.ReadCounter(); !errors.Is(err, ErrNotCounter) {
		t.Fatalf("ReadCounter of an ordinary index: %v; want ErrNotCounter", err)
	}
	if _, err := tp.AdvanceCounter(1); !errors.Is(err, ErrNotCounter) {
		t.Fatalf("AdvanceCounter over an ordinary index: %v; want ErrNotCounter", err)
	}
}
