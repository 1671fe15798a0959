package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/ggcore/ggcore/internal/keyspec"
)

// CounterIndex is the NV index of the monotonic counter that holds the
// lowest security version of a release this gateway may install or boot
// (an index in the owner-defined range 0x01500000..0x017FFFFF).
const CounterIndex uint32 = 0x01500016

// MaxCounterTarget bounds AdvanceCounter's target: release security
// versions are 0..65535, and every step is one TPM2_NV_Increment (an
// NV write), so a target far above the counter would wear the TPM out.
const MaxCounterTarget uint64 = 65535

// ErrNotCounter means the NV index exists but is not a counter that ggcore
// can read and increment with an empty authorization value.
var ErrNotCounter = errors.New("NV index is not a counter usable with empty authorization")

// counterAttributes are the attributes of the counter ggcore defines: a
// TPMA_NV_COUNTER (values only go up; the TPM starts a counter that was
// deleted and defined again at the highest value any counter of this TPM
// ever had, so deleting it cannot lower it), read and written with the
// index's empty authorization value or the owner's, not orderly (every
// increment reaches NV at once, so a power cut cannot lose one), noDA as
// ggcore's keys are.
func counterAttributes() tpm2.TPMANV {
	return tpm2.TPMANV{
		NT:         tpm2.TPMNTCounter,
		OwnerWrite: true,
		AuthWrite:  true,
		OwnerRead:  true,
		AuthRead:   true,
		NoDA:       true,
	}
}

// ReadCounter opens the TPM named by device (Open's syntax) without
// touching its keys, reads the counter at CounterIndex and closes it.
// defined is false (and the value 0) when no counter is defined there;
// a counter defined but never incremented reads 0. For ggboot and tools;
// a process that holds the TPM open calls (*TPM).ReadCounter instead
// (swtpm serves one client at a time).
func ReadCounter(device string) (value uint64, defined bool, err error) {
	t, err := openBare(device)
	if err != nil {
		return 0, false, fmt.Errorf("tpm: read counter: %w", err)
	}
	defer t.Close()
	return t.ReadCounter()
}

// AdvanceCounter opens the TPM named by device, advances the counter at
// CounterIndex to at least to (see (*TPM).AdvanceCounter) and closes it.
func AdvanceCounter(device string, to uint64) (uint64, error) {
	t, err := openBare(device)
	if err != nil {
		return 0, fmt.Errorf("tpm: advance counter: %w", err)
	}
	defer t.Close()
	return t.AdvanceCounter(to)
}

// openBare connects to a TPM and starts it up without making sure of the
// SRK: enough for NV commands, and it writes nothing to the TPM.
func openBare(device string) (*TPM, error) {
	d, err := keyspec.ParseTPMDevice(device)
	if err != nil {
		return nil, err
	}
	tr, err := openTransport(d, firstCommandTimeout)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	t := &TPM{device: d.String(), tr: tr, loaded: map[[32]byte]*Key{}}
	_, err = tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: CounterIndex, PropertyCount: 1}.Execute(tr)
	if err != nil && isTPMError(err) && errors.Is(err, tpm2.TPMRCInitialize) {
		_, err = tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(tr)
	}
	if err != nil {
		tr.Close()
		if !isTPMError(err) {
			err = fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	return t, nil
}

// ReadCounter reads the counter at CounterIndex. defined is false (and
// the value 0) when no NV index is defined there; a counter defined but
// never incremented reads 0. An index there that is not such a counter
// is ErrNotCounter.
func (t *TPM) ReadCounter() (value uint64, defined bool, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return 0, false, fmt.Errorf("tpm: read counter 0x%08x: %w", CounterIndex, errClosed)
	}
	value, defined, err = t.readCounter()
	if err != nil {
		return 0, false, fmt.Errorf("tpm: read counter 0x%08x: %w", CounterIndex, err)
	}
	return value, defined, nil
}

// AdvanceCounter increments the counter at CounterIndex until it is at
// least to, defining it first (in the owner hierarchy, empty
// authorization) if no index is defined there, and returns its value. A
// counter already at or above to is left as it is (it never goes down).
// to above MaxCounterTarget is refused before anything is written.
func (t *TPM) AdvanceCounter(to uint64) (uint64, error) {
	if to > MaxCounterTarget {
		return 0, fmt.Errorf("tpm: advance counter 0x%08x to %d: above the bound %d", CounterIndex, to, MaxCounterTarget)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr == nil {
		return 0, fmt.Errorf("tpm: advance counter 0x%08x: %w", CounterIndex, errClosed)
	}
	v, err := t.advanceCounter(to)
	if err != nil {
		return 0, fmt.Errorf("tpm: advance counter 0x%08x to %d: %w", CounterIndex, to, err)
	}
	return v, nil
}

func (t *TPM) advanceCounter(to uint64) (uint64, error) {
	v, defined, err := t.readCounter()
	if err != nil {
		return 0, err
	}
	if !defined {
		if to == 0 {
			return 0, nil
		}
		if err := t.defineCounter(); err != nil {
			return 0, err
		}
	}
	// A counter starts (on its first increment) at the highest value any
	// counter of this TPM had, plus one; each increment adds one, so at
	// most to increments are needed, and a counter that does not move
	// ends the loop with an error.
	for v < to {
		name, err := t.counterName()
		if err != nil {
			return v, err
		}
		err = t.run(nil, func() error {
			_, err := tpm2.NVIncrement{
				AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: name, Auth: tpm2.PasswordAuth(nil)},
				NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: name},
			}.Execute(t.tr)
			return err
		})
		if err != nil {
			return v, fmt.Errorf("TPM2_NV_Increment: %w", err)
		}
		nv, _, err := t.readCounter()
		if err != nil {
			return v, err
		}
		if nv <= v {
			return v, fmt.Errorf("counter did not move from %d on TPM2_NV_Increment", v)
		}
		v = nv
	}
	return v, nil
}

// defineCounter defines the counter at CounterIndex in the owner
// hierarchy. The caller holds t.mu.
func (t *TPM) defineCounter() error {
	err := t.run(nil, func() error {
		_, err := tpm2.NVDefineSpace{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			PublicInfo: tpm2.New2B(tpm2.TPMSNVPublic{
				NVIndex:    tpm2.TPMHandle(CounterIndex),
				NameAlg:    tpm2.TPMAlgSHA256,
				Attributes: counterAttributes(),
				DataSize:   8,
			}),
		}.Execute(t.tr)
		return err
	})
	if err != nil && !errors.Is(err, tpm2.TPMRCNVDefined) {
		return fmt.Errorf("TPM2_NV_DefineSpace: %w", err)
	}
	return nil
}

// counterPublic reads the public area of CounterIndex; defined is false
// when no index is there. The caller holds t.mu.
func (t *TPM) counterPublic() (pub *tpm2.TPMSNVPublic, name tpm2.TPM2BName, defined bool, err error) {
	var rsp *tpm2.NVReadPublicResponse
	err = t.run(nil, func() (err error) {
		rsp, err = tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(CounterIndex)}.Execute(t.tr)
		return err
	})
	if errors.Is(err, tpm2.TPMRCHandle) {
		return nil, tpm2.TPM2BName{}, false, nil
	}
	if err != nil {
		return nil, tpm2.TPM2BName{}, false, fmt.Errorf("TPM2_NV_ReadPublic: %w", err)
	}
	pub, err = rsp.NVPublic.Contents()
	if err != nil {
		return nil, tpm2.TPM2BName{}, false, fmt.Errorf("TPM2_NV_ReadPublic: %w", err)
	}
	a := pub.Attributes
	if a.NT != tpm2.TPMNTCounter || !a.AuthRead || !a.AuthWrite || pub.DataSize != 8 {
		return nil, tpm2.TPM2BName{}, false, fmt.Errorf("%w (type %d, authRead %t, authWrite %t, size %d)", ErrNotCounter, a.NT, a.AuthRead, a.AuthWrite, pub.DataSize)
	}
	return pub, rsp.NVName, true, nil
}

// counterName returns the current name of CounterIndex (it changes
// when the index is first written). The caller holds t.mu.
func (t *TPM) counterName() (tpm2.TPM2BName, error) {
	_, name, defined, err := t.counterPublic()
	if err != nil {
		return name, err
	}
	if !defined {
		return name, errors.New("counter not defined")
	}
	return name, nil
}

// readCounter reads CounterIndex. The caller holds t.mu.
func (t *TPM) readCounter() (uint64, bool, error) {
	pub, name, defined, err := t.counterPublic()
	if err != nil || !defined {
		return 0, defined, err
	}
	if !pub.Attributes.Written {
		return 0, true, nil
	}
	var rsp *tpm2.NVReadResponse
	err = t.run(nil, func() (err error) {
		rsp, err = tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: name, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(CounterIndex), Name: name},
			Size:       8,
		}.Execute(t.tr)
		return err
	})
	if errors.Is(err, tpm2.TPMRCNVUninitialized) {
		return 0, true, nil
	}
	if err != nil {
		return 0, true, fmt.Errorf("TPM2_NV_Read: %w", err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, true, fmt.Errorf("TPM2_NV_Read: %d bytes, want 8", len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), true, nil
}
