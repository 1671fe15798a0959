// Package install puts a signed release into the inactive slot of a
// ggcore system disk and arms it for one trial boot, and commits a trial
// boot that passed the core's health check (docs/design.md "Firmware
// updates").
//
// Install refuses a release before it writes a byte when its signature,
// its compatible (arch, board, flavor), its security version (against the
// TPM's NV counter, or without a TPM the committed slot's release) or its
// size (against the inactive slot) is wrong. It then streams the release
// verbatim into the inactive slot while hashing every part, syncs, reads
// the slot back from the device and compares, and only then saves the
// slot state that makes ggboot try the slot. The running slot is never
// opened for writing. A failure after the first byte was written (a hash
// mismatch in the payload, a short download) leaves the inactive slot
// partly written but never armed, and the slot state unchanged.
//
// Commit runs on a trial boot: once the health check passes within its
// deadline it advances the TPM counter to the release's security version
// and makes the trial slot the committed one, recording a Success result
// for the core to report.
package install

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
)

// Errors of this package, besides the release package's (ErrBadSignature,
// ErrIncompatible, ErrDowngrade, ErrHashMismatch, ErrNoSpace, ...), which
// Install's errors wrap as they are.
var (
	// ErrTrialRunning: the system runs a slot on trial that is not
	// committed yet; installing now would overwrite the committed slot,
	// the one ggboot falls back to.
	ErrTrialRunning = errors.New("a trial boot is in progress")
	// ErrNotTrial: Commit was called on a boot that is not a trial.
	ErrNotTrial = errors.New("not a trial boot")
	// ErrUnhealthy: the health check did not pass within its deadline.
	ErrUnhealthy = errors.New("health check failed")
	// ErrReadBack: the slot read back from the device differs from what
	// was written.
	ErrReadBack = errors.New("slot read back differs from what was written")
)

// Disk names the partitions (or plain files, in tests) of a system disk.
type Disk struct {
	State string // the slot state partition (or the device holding it)
	// StateOffset is where the state starts in State: 0 for a partition
	// of its own, else the offset ggcore.state=DEVICE@OFFSET names.
	StateOffset int64
	A, B        string // the slots
}

// OpenState opens the slot state.
func (d Disk) OpenState() (*slot.Store, error) {
	return slot.OpenAt(d.State, d.StateOffset)
}

// Slot returns the partition of slot name ("A" or "B").
func (d Disk) Slot(name string) string {
	if name == slot.B {
		return d.B
	}
	return d.A
}

// SystemDisk names the partitions of a system disk: partition 1 (state),
// 2 (slot A) and 3 (slot B) of a block device (/dev/vdb1, or
// /dev/mmcblk0p1 when the device name ends in a digit), or, when dev is a
// directory, the files "state", "A" and "B" in it (a host without a
// system disk, tests).
func SystemDisk(dev string) Disk {
	if fi, err := os.Stat(dev); err == nil && fi.IsDir() {
		return Disk{State: filepath.Join(dev, "state"), A: filepath.Join(dev, "A"), B: filepath.Join(dev, "B")}
	}
	return Disk{State: slot.Partition(dev, 1), A: slot.Partition(dev, 2), B: slot.Partition(dev, 3)}
}

// Counter is the TPM's monotonic counter of security versions
// (*tpm.TPM implements it).
type Counter interface {
	ReadCounter() (value uint64, defined bool, err error)
	AdvanceCounter(to uint64) (uint64, error)
}

// System is the running system as Install and Commit see it.
type System struct {
	Disk Disk
	// Running is the slot the running system booted from ("A" or "B":
	// ggcore.slot= on the kernel command line). It is never written.
	Running string
	// Compatible is the running image's: a release must match it
	// exactly. RunningCompatible reads it from the running slot.
	Compatible release.Compatible
	// Verifier holds the release keys built into the image.
	Verifier *release.Verifier
	// Counter is the TPM's counter; nil on a system without a TPM, where
	// the committed slot's release's security version is the floor.
	Counter Counter
	// Log receives progress lines; nil means slog.Default().
	Log *slog.Logger
}

// Options are one installation's.
type Options struct {
	// Deployment is the ID of the deployment that brings the release,
	// recorded in the slot state for the report after the trial.
	Deployment string
	// SHA256 (lowercase hex) and Size, when set, are what the deployment
	// says of the whole release file; a release that differs is refused
	// (before it is armed: the file hash is known only at its end).
	SHA256 string
	Size   int64
	// Progress, if set, is called as the slot is written: bytes written
	// so far and the release's total, at least every MiB and at the end.
	Progress func(written, total int64)
}

// Result describes a release installed and armed.
type Result struct {
	Slot            string // the slot written and armed for a trial
	Version         string
	SecurityVersion uint32
	Bytes           int64         // bytes written to the slot: the release file's size
	Took            time.Duration // from the first byte read to the state saved
}

// chunk is the unit of writing and of progress reports.
const chunk = 1 << 20

func (s *System) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// Install reads a release from src and installs it into the slot that is
// not running, then arms that slot for one trial boot (DefaultTries boots
// at most). Every refusal is an error wrapping the release package's
// error that says why (its text is what the core reports).
func (s *System) Install(ctx context.Context, src io.Reader, o Options) (*Result, error) {
	start := time.Now()
	if s.Running != slot.A && s.Running != slot.B {
		return nil, fmt.Errorf("install: running slot %q unknown: want A or B", s.Running)
	}
	if s.Verifier == nil {
		return nil, errors.New("install: no release keys")
	}
	store, err := s.Disk.OpenState()
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	defer store.Close()
	st, err := store.Load()
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	if st.Active != s.Running {
		return nil, fmt.Errorf("install: %w: running slot %s is not committed yet (committed: %s)", ErrTrialRunning, s.Running, st.Active)
	}
	target := slot.Other(s.Running)

	// The header: signature, compatible, security version, size.
	var head bytes.Buffer
	fileHash := sha256.New()
	in := io.TeeReader(src, fileHash)
	h, err := release.ReadHeader(io.TeeReader(in, &head), s.Verifier)
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	floor, err := s.floor(st)
	if err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	if err := h.Check(s.Compatible, floor); err != nil {
		return nil, fmt.Errorf("install: %w", err)
	}
	total := h.Size + h.PayloadSize()
	if o.Size > 0 && o.Size != total {
		return nil, fmt.Errorf("install: %w: the deployment says %d bytes, the release's header says %d", release.ErrMalformed, o.Size, total)
	}
	f, err := os.OpenFile(s.Disk.Slot(target), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("install: slot %s: %w", target, err)
	}
	defer f.Close()
	room, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("install: slot %s: size: %w", target, err)
	}
	if total > room {
		return nil, fmt.Errorf("install: %w: release %s is %d bytes, slot %s holds %d", release.ErrNoSpace, h.Manifest.Version, total, target, room)
	}

	// A trial of the target slot that was armed but never booted ends
	// here: its slot is about to be overwritten.
	if st.Trial == target {
		st.Trial, st.TriesLeft, st.Deployment, st.TrialVersion, st.TrialSecurityVersion = "", 0, "", "", 0
		if err := store.Save(st); err != nil {
			return nil, fmt.Errorf("install: disarm slot %s: %w", target, err)
		}
	}

	s.log().Info("installing release", "version", h.Manifest.Version, "security_version", h.Manifest.SecurityVersion,
		"slot", target, "bytes", total)
	w := &progressWriter{ctx: ctx, w: io.NewOffsetWriter(f, 0), total: total, fn: o.Progress}
	if _, err := w.Write(head.Bytes()); err != nil {
		return nil, fmt.Errorf("install: slot %s: %w", target, err)
	}
	pr := h.Parts(in)
	buf := make([]byte, chunk)
	for {
		part, r, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("install: %w", err)
		}
		if _, err := io.CopyBuffer(w, r, buf); err != nil {
			return nil, fmt.Errorf("install: part %s: %w", part.Name, err)
		}
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("install: slot %s: sync: %w", target, err)
	}
	sum := fileHash.Sum(nil)
	if o.SHA256 != "" && hex.EncodeToString(sum) != o.SHA256 {
		return nil, fmt.Errorf("install: %w: the release file has sha256 %x, the deployment says %s", release.ErrHashMismatch, sum, o.SHA256)
	}
	if err := readBack(f, total, sum); err != nil {
		return nil, fmt.Errorf("install: slot %s: %w", target, err)
	}

	st.Trial, st.TriesLeft = target, slot.DefaultTries
	st.Deployment, st.TrialVersion, st.TrialSecurityVersion = o.Deployment, h.Manifest.Version, h.Manifest.SecurityVersion
	if err := store.Save(st); err != nil {
		return nil, fmt.Errorf("install: arm slot %s: %w", target, err)
	}
	res := &Result{Slot: target, Version: h.Manifest.Version, SecurityVersion: h.Manifest.SecurityVersion,
		Bytes: total, Took: time.Since(start)}
	s.log().Info("release installed; the slot is armed for a trial boot", "version", res.Version, "slot", target,
		"bytes", total, "took", res.Took.Round(time.Millisecond))
	return res, nil
}

// floor is the lowest security version this system accepts: the TPM
// counter's value, or without a TPM the security version of the release
// in the committed slot (0 if that slot holds no release these keys
// verify).
func (s *System) floor(st slot.State) (uint32, error) {
	if s.Counter != nil {
		v, _, err := s.Counter.ReadCounter()
		if err != nil {
			return 0, err
		}
		if v > release.MaxSecurityVersion {
			v = release.MaxSecurityVersion + 1 // refuses every release
		}
		return uint32(v), nil
	}
	h, err := s.readSlotHeader(st.Active)
	if err != nil {
		s.log().Warn("no TPM, and the committed slot holds no verifiable release: every security version is accepted",
			"slot", st.Active, "error", err)
		return 0, nil
	}
	return h.Manifest.SecurityVersion, nil
}

// RunningHeader reads and verifies the header of the release in the
// running slot: what this system booted.
func (s *System) RunningHeader() (*release.Header, error) {
	return s.readSlotHeader(s.Running)
}

func (s *System) readSlotHeader(name string) (*release.Header, error) {
	f, err := os.Open(s.Disk.Slot(name))
	if err != nil {
		return nil, fmt.Errorf("install: slot %s: %w", name, err)
	}
	defer f.Close()
	h, err := release.ReadHeader(f, s.Verifier)
	if err != nil {
		return nil, fmt.Errorf("install: slot %s: %w", name, err)
	}
	return h, nil
}

// progressWriter writes to w, reporting progress at least every chunk
// and stopping when ctx ends.
type progressWriter struct {
	ctx          context.Context
	w            io.Writer
	total, done  int64
	lastReported int64
	fn           func(written, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	if err := p.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.fn != nil && (p.done-p.lastReported >= chunk || p.done == p.total) {
		p.fn(p.done, p.total)
		p.lastReported = p.done
	}
	return n, err
}

// readBack drops the slot's pages from the page cache, so that they are
// read from the device, and compares the first n bytes' SHA-256 with sum.
func readBack(f *os.File, n int64, sum []byte) error {
	// Best effort: a file system or device that ignores the advice is read
	// from the cache, which still catches a write that went wrong in this
	// process.
	_ = unix.Fadvise(int(f.Fd()), 0, n, unix.FADV_DONTNEED)
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, n)); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, sum) {
		return fmt.Errorf("%w: sha256 %x, wrote %x", ErrReadBack, got, sum)
	}
	return nil
}
