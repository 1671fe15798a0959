package tpm

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// errStale marks a swapped-out key without a usable saved context.
var errStale = errors.New("no saved context")

// maxWarnRetries bounds retries of commands the TPM answered with a
// "try again" warning (TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING).
const maxWarnRetries = 8

// run executes f, one or more TPM commands, making room in the TPM's
// object slots when it answers TPM_RC_OBJECT_MEMORY: the least recently
// used key this TPM loaded (other than pin, which f needs loaded) is
// swapped out and f runs again. f must build its command afresh on each
// call. The caller holds t.mu.
func (t *TPM) run(pin *Key, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, tpm2.TPMRCObjectMemory):
			victim := t.lru(pin)
			if victim == nil {
				return fmt.Errorf("%w (no key of ggcore's left to swap out: another user of this TPM holds its object slots)", err)
			}
			if serr := t.swapOut(victim); serr != nil {
				return fmt.Errorf("%w (swapping out key 0x%08x to make room: %v)", err, uint32(victim.last), serr)
			}
		case isRetryWarning(err) && attempt < maxWarnRetries:
			time.Sleep(time.Duration(attempt+1) * 20 * time.Millisecond)
		default:
			return err
		}
	}
}

func isRetryWarning(err error) bool {
	return errors.Is(err, tpm2.TPMRCRetry) || errors.Is(err, tpm2.TPMRCYielded) || errors.Is(err, tpm2.TPMRCTesting)
}

// isTPMError reports whether err carries a TPM response code, as opposed
// to a transport or encoding failure.
func isTPMError(err error) bool {
	var rc tpm2.TPMRC
	return errors.As(err, &rc)
}

// lru returns the least recently used loaded key other than pin, or nil.
func (t *TPM) lru(pin *Key) *Key {
	var victim *Key
	for _, k := range t.loaded {
		if k == pin || k.handle == 0 {
			continue
		}
		if victim == nil || k.lastUse < victim.lastUse {
			victim = k
		}
	}
	return victim
}

// swapOut frees k's object slot. Its context is saved the first time;
// a saved object context can be loaded again and again (unlike a
// session's), and stays valid until the TPM is reset.
func (t *TPM) swapOut(k *Key) error {
	if k.saved == nil {
		rsp, err := tpm2.ContextSave{SaveHandle: k.handle}.Execute(t.tr)
		if err != nil {
			return fmt.Errorf("TPM2_ContextSave: %w", err)
		}
		k.saved = &rsp.Context
	}
	if _, err := (tpm2.FlushContext{FlushHandle: k.handle}).Execute(t.tr); err != nil {
		return fmt.Errorf("TPM2_FlushContext: %w", err)
	}
	k.handle = 0
	t.swaps++
	return nil
}

// use returns k's handle, loading k back if it was swapped out, and
// marks k as just used. The caller holds t.mu.
func (t *TPM) use(k *Key) (tpm2.TPMHandle, error) {
	if t.tr == nil {
		return 0, errClosed
	}
	t.tick++
	k.lastUse = t.tick
	if k.persistent || k.handle != 0 {
		return k.handle, nil
	}
	var h tpm2.TPMHandle
	err := errStale
	if k.saved != nil {
		err = t.run(k, func() error {
			rsp, err := tpm2.ContextLoad{Context: *k.saved}.Execute(t.tr)
			if err != nil {
				return err
			}
			h = rsp.LoadedHandle
			return nil
		})
	}
	if errors.Is(err, errStale) || (isTPMError(err) && !errors.Is(err, tpm2.TPMRCObjectMemory)) {
		// No saved context, or it no longer loads (the TPM was reset
		// since it was saved): load the wrapped key again.
		k.saved = nil
		h, err = t.loadBlob(k.blob, k.name)
	}
	if err != nil {
		return 0, fmt.Errorf("load key back: %w", err)
	}
	k.handle, k.last = h, h
	return h, nil
}
