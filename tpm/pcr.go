package tpm

import (
	"crypto/sha256"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// BootPCR is the PCR the first stage (ggboot) extends with the SHA-256 of
// the booted release's manifest. PCR 13 is free for the OS to use on both
// PC-client and Arm platforms.
const BootPCR = 13

// ExpectedBootPCR returns the value of BootPCR after one extend of a
// freshly reset (all zero) SHA-256 bank with digest: SHA-256(zeros || digest).
func ExpectedBootPCR(digest [32]byte) [32]byte {
	var buf [64]byte
	copy(buf[32:], digest[:])
	return sha256.Sum256(buf[:])
}

// ExtendPCR opens the TPM named by device (Open's syntax) without touching
// its keys, extends the SHA-256 bank of PCR index with digest and closes it.
func ExtendPCR(device string, index int, digest [32]byte) error {
	t, err := openBare(device)
	if err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", index, err)
	}
	defer t.Close()
	return t.ExtendPCR(index, digest)
}

// ReadPCR opens the TPM named by device, reads the SHA-256 bank of PCR
// index and closes it.
func ReadPCR(device string, index int) ([32]byte, error) {
	t, err := openBare(device)
	if err != nil {
		return [32]byte{}, fmt.Errorf("tpm: read PCR %d: %w", index, err)
	}
	defer t.Close()
	return t.ReadPCR(index)
}

// ExtendPCR extends the SHA-256 bank of PCR index with digest.
func (t *TPM) ExtendPCR(index int, digest [32]byte) error {
	if index < 0 || index > 23 {
		return fmt.Errorf("tpm: extend PCR %d: no such PCR", index)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", index, errClosed)
	}
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: digest[:],
		}}},
	}.Execute(t.tr)
	if err != nil {
		return fmt.Errorf("tpm: extend PCR %d: %w", index, err)
	}
	return nil
}

// ReadPCR reads the SHA-256 bank of PCR index.
func (t *TPM) ReadPCR(index int) ([32]byte, error) {
	var out [32]byte
	if index < 0 || index > 23 {
		return out, fmt.Errorf("tpm: read PCR %d: no such PCR", index)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return out, fmt.Errorf("tpm: read PCR %d: %w", index, errClosed)
	}
	rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(uint(index)),
	}}}}.Execute(t.tr)
	if err != nil {
		return out, fmt.Errorf("tpm: read PCR %d: %w", index, err)
	}
	if len(rsp.PCRValues.Digests) != 1 || len(rsp.PCRValues.Digests[0].Buffer) != len(out) {
		return out, fmt.Errorf("tpm: read PCR %d: the TPM returned %d values, want one SHA-256 value", index, len(rsp.PCRValues.Digests))
	}
	copy(out[:], rsp.PCRValues.Digests[0].Buffer)
	return out, nil
}
