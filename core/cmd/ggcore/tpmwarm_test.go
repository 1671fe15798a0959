package main

import (
	"testing"

	"github.com/ggcore/ggcore/internal/keyspec"
	"github.com/ggcore/ggcore/internal/testtool"
)

// TestTPMWarmup checks the early TPM connection: the store gets it for
// the device it was opened for (once), another device gets a connection
// of its own, and an absent device node means no warm-up at all.
func TestTPMWarmup(t *testing.T) {
	if w := warmTPM("/dev/no-such-tpm"); w != nil {
		t.Fatal("warm-up started for a device node that does not exist")
	}
	var none *tpmWarmup
	if _, err := none.open("/dev/no-such-tpm"); err == nil {
		t.Fatal("no warm-up: opening a missing TPM must fail")
	}
	none.close()

	sw := testtool.StartSWTPM(t, "unix")
	w := warmTPM(sw.Device)
	if w == nil {
		t.Fatal("no warm-up for swtpm")
	}
	first, err := w.open(sw.Device)
	if err != nil {
		t.Fatalf("open the warm connection: %v", err)
	}
	w.close() // taken: close must leave it alone
	if _, err := first.Create(keyspec.ECP256, keyspec.Sign); err != nil {
		t.Fatalf("the warm connection was closed under its taker: %v", err)
	}
	first.Close()
	// Taken once: the next open is a connection of its own.
	second, err := w.open(sw.Device)
	if err != nil {
		t.Fatalf("open again: %v", err)
	}
	if second == first {
		t.Fatal("the warm connection was handed over twice")
	}
	second.Close()
}
