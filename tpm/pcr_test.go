package tpm

import (
	"crypto/sha256"
	"testing"

	"github.com/ggcore/ggcore/internal/testtool"
)

// TestBootPCR extends the boot PCR as ggboot does and reads back the value
// `ggprov release pcr` publishes.
func TestBootPCR(t *testing.T) {
	sw := testtool.StartSWTPM(t, "unix")
	before, err := ReadPCR(sw.Device, BootPCR)
	if err != nil {
		t.Fatal(err)
	}
	if before != ([32]byte{}) {
		t.Fatalf("PCR %d of a fresh TPM = %x, want zeros", BootPCR, before)
	}
	digest := sha256.Sum256([]byte(`{"format":1}`))
	if err := ExtendPCR(sw.Device, BootPCR, digest); err != nil {
		t.Fatal(err)
	}
	got, err := ReadPCR(sw.Device, BootPCR)
	if err != nil {
		t.Fatal(err)
	}
	if want := ExpectedBootPCR(digest); got != want {
		t.Fatalf("PCR %d = %x, want %x", BootPCR, got, want)
	}
	// Other PCRs are untouched.
	if other, err := ReadPCR(sw.Device, BootPCR+1); err != nil || other != ([32]byte{}) {
		t.Fatalf("PCR %d = %x, %v; want zeros", BootPCR+1, other, err)
	}
	for _, bad := range []int{-1, 24} {
		if err := ExtendPCR(sw.Device, bad, digest); err == nil {
			t.Errorf("ExtendPCR(%d) succeeded", bad)
		}
	}
}
