package install

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
	"github.com/ggcore/ggcore/tpm"
)

// TestTPMFloor runs an update's life against a real (software) TPM: the
// commit advances the NV counter, and from then on an install below it
// is refused even though the slot state no longer says anything of it.
func TestTPMFloor(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")
	tp, err := tpm.Open(sw.Device)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	key := newKey(t)
	v, _ := release.NewVerifier(key.Public())
	d := disk(t, 1<<20, 1<<20)
	saveState(t, d, slot.State{Active: slot.A})

	sys := &System{Disk: d, Running: slot.A, Compatible: q35, Verifier: v, Counter: tp}
	if _, err := sys.Install(context.Background(), bytes.NewReader(build(t, key, q35, "1.3.0", 3, 100, 100)), Options{Deployment: "dep-1"}); err != nil {
		t.Fatalf("Install on a fresh TPM: %v", err)
	}
	// ggboot boots slot B on trial; the core there commits.
	st := loadState(t, d)
	st.TriesLeft--
	saveState(t, d, st)
	trial := &System{Disk: d, Running: slot.B, Compatible: q35, Verifier: v, Counter: tp}
	if _, err := trial.Commit(context.Background(), func(context.Context) error { return nil }, time.Minute); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if v, defined, err := tp.ReadCounter(); err != nil || !defined || v != 3 {
		t.Fatalf("counter after commit: %d, %t, %v; want 3", v, defined, err)
	}
	// The data partition and the slot state are wiped; the TPM remembers.
	saveState(t, d, slot.State{Active: slot.B})
	_, err = trial.Install(context.Background(), bytes.NewReader(build(t, key, q35, "1.2.0", 2, 100, 100)), Options{})
	if !errors.Is(err, release.ErrDowngrade) {
		t.Fatalf("Install of security version 2 over counter 3: %v; want ErrDowngrade", err)
	}
	if _, err := trial.Install(context.Background(), bytes.NewReader(build(t, key, q35, "1.3.1", 3, 100, 100)), Options{}); err != nil {
		t.Fatalf("Install of security version 3 at counter 3: %v", err)
	}
}
