// Package slot keeps the A/B slot state of a ggcore system disk: which slot is
// committed, which one is on trial and with how many tries left, and the outcome
// of the last trial.
//
// The state lives in a small raw partition as two fixed-size copies. Each copy
// carries a sequence number and a SHA-256 checksum; the valid copy with the
// highest sequence wins, and a save always overwrites the other copy with the
// next sequence, then syncs. A write torn at any byte therefore leaves either the
// old state or the new one loadable, never a mix.
package slot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Layout constants of the state partition.
const (
	// CopySize is the size of one copy of the state, in bytes.
	CopySize = 4096
	// Size is the number of bytes of the state partition used by the two copies.
	Size = 2 * CopySize
	// MaxJSON is the largest JSON document one copy can hold.
	MaxJSON = CopySize - headerSize - sha256.Size

	magic      = "GGSLOT1\n"
	headerSize = len(magic) + 8 + 4
)

// Slot names.
const (
	A = "A"
	B = "B"
)

// Trial outcomes recorded in Result.Status.
const (
	StatusSuccess = "Success"
	StatusFailure = "Failure"
)

// DefaultTries is how many boots a freshly armed trial slot gets.
const DefaultTries = 3

// ErrInvalid reports a copy that is not a valid state copy (wrong magic,
// checksum, length or JSON).
var ErrInvalid = errors.New("slot: invalid state copy")

// State is the A/B slot state.
type State struct {
	// Active is the committed slot, "A" or "B".
	Active string `json:"active"`
	// Trial is "" or the slot on trial.
	Trial string `json:"trial,omitempty"`
	// TriesLeft is the number of boots left for the trial slot.
	TriesLeft int `json:"triesLeft,omitempty"`
	// Deployment is the ID of the deployment that armed the trial.
	Deployment string `json:"deployment,omitempty"`
	// TrialVersion is the version of the release on trial.
	TrialVersion string `json:"trialVersion,omitempty"`
	// TrialSecurityVersion is the security version of the release on trial.
	TrialSecurityVersion uint32 `json:"trialSecurityVersion,omitempty"`
	// Result is the last trial's outcome, cleared by the core once reported.
	Result *Result `json:"result,omitempty"`
}

// Result is the outcome of a trial.
type Result struct {
	Deployment string    `json:"deployment,omitempty"`
	Slot       string    `json:"slot,omitempty"`
	Version    string    `json:"version,omitempty"`
	Status     string    `json:"status"` // StatusSuccess or StatusFailure
	Reason     string    `json:"reason,omitempty"`
	At         time.Time `json:"at"`
}

// Fresh returns the state of a system disk with no valid copy: slot A active.
func Fresh() State { return State{Active: A} }

// Other returns the slot that is not s ("A" for "B", "B" otherwise).
func Other(s string) string {
	if s == B {
		return A
	}
	return B
}

// Validate reports whether st is a state ggboot can act on.
func (st State) Validate() error {
	if st.Active != A && st.Active != B {
		return fmt.Errorf("slot: active slot %q is not A or B", st.Active)
	}
	if st.Trial != "" && st.Trial != A && st.Trial != B {
		return fmt.Errorf("slot: trial slot %q is not A or B", st.Trial)
	}
	if st.TriesLeft < 0 {
		return fmt.Errorf("slot: negative tries left %d", st.TriesLeft)
	}
	return nil
}

// Encode returns one copy of st with sequence seq: exactly CopySize bytes.
func Encode(st State, seq uint64) ([]byte, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	js, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("slot: encode: %w", err)
	}
	if len(js) > MaxJSON {
		return nil, fmt.Errorf("slot: encode: state is %d bytes of JSON, at most %d fit", len(js), MaxJSON)
	}
	b := make([]byte, CopySize)
	copy(b, magic)
	binary.BigEndian.PutUint64(b[len(magic):], seq)
	binary.BigEndian.PutUint32(b[len(magic)+8:], uint32(len(js)))
	copy(b[headerSize:], js)
	sum := sha256.Sum256(b[:CopySize-sha256.Size])
	copy(b[CopySize-sha256.Size:], sum[:])
	return b, nil
}

// Decode parses one copy. It returns ErrInvalid (wrapped with detail) for any
// copy that Encode did not produce.
func Decode(b []byte) (State, uint64, error) {
	if len(b) != CopySize {
		return State{}, 0, fmt.Errorf("%w: %d bytes, want %d", ErrInvalid, len(b), CopySize)
	}
	if string(b[:len(magic)]) != magic {
		return State{}, 0, fmt.Errorf("%w: bad magic", ErrInvalid)
	}
	sum := sha256.Sum256(b[:CopySize-sha256.Size])
	if !bytes.Equal(sum[:], b[CopySize-sha256.Size:]) {
		return State{}, 0, fmt.Errorf("%w: checksum mismatch", ErrInvalid)
	}
	seq := binary.BigEndian.Uint64(b[len(magic):])
	n := binary.BigEndian.Uint32(b[len(magic)+8:])
	if n == 0 || n > uint32(MaxJSON) {
		return State{}, 0, fmt.Errorf("%w: JSON length %d", ErrInvalid, n)
	}
	for _, c := range b[headerSize+int(n) : CopySize-sha256.Size] {
		if c != 0 {
			return State{}, 0, fmt.Errorf("%w: non-zero padding", ErrInvalid)
		}
	}
	var st State
	dec := json.NewDecoder(bytes.NewReader(b[headerSize : headerSize+int(n)]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return State{}, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if dec.More() {
		return State{}, 0, fmt.Errorf("%w: trailing data after JSON", ErrInvalid)
	}
	if err := st.Validate(); err != nil {
		return State{}, 0, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return st, seq, nil
}

// Pick chooses between the two copies of a state partition (the first Size
// bytes): the valid copy with the highest sequence. ok is false when neither
// copy is valid; index is 0 or 1, the copy picked.
func Pick(area []byte) (st State, seq uint64, index int, ok bool) {
	index = -1
	for i := 0; i < 2; i++ {
		if len(area) < (i+1)*CopySize {
			break
		}
		s, q, err := Decode(area[i*CopySize : (i+1)*CopySize])
		if err != nil {
			continue
		}
		if index < 0 || q > seq {
			st, seq, index = s, q, i
		}
	}
	if index < 0 {
		return Fresh(), 0, -1, false
	}
	return st, seq, index, true
}

// Store reads and writes the state on a block device or file.
type Store struct {
	f      *os.File
	offset int64 // where the state starts in f
	// seq and index describe the copy last loaded or saved; index is -1 when
	// neither copy is valid.
	seq    uint64
	index  int
	loaded bool
}

// Open opens the state partition (or a file standing in for one) for reading
// and writing.
func Open(path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("slot: open state: %w", err)
	}
	return &Store{f: f, index: -1}, nil
}

// Partition names partition n of the block device disk: "/dev/vdb" and 1
// give "/dev/vdb1"; a device whose name ends in a digit takes a "p" before
// the number ("/dev/mmcblk0p1", "/dev/nvme0n1p1").
func Partition(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// ParseLocation parses where the state is, as ggcore.state= on the kernel
// command line says it: a device (or file), or DEVICE@OFFSET for a state
// kept at a byte offset of a device outside any partition (an SD card
// whose partition table has no room for a state partition). The offset,
// decimal or 0x hex, is a multiple of 512 bytes.
func ParseLocation(v string) (path string, offset int64, err error) {
	dev, off, ok := strings.Cut(v, "@")
	if dev == "" {
		return "", 0, fmt.Errorf("slot: state location %q: no device", v)
	}
	if !ok {
		return dev, 0, nil
	}
	n, err := strconv.ParseInt(off, 0, 64)
	if err != nil || n < 0 || n%512 != 0 {
		return "", 0, fmt.Errorf("slot: state location %q: the offset is not a multiple of 512 bytes", v)
	}
	return dev, n, nil
}

// OpenAt opens the state that starts offset bytes into the file at path: a
// whole system disk image, or a device whose state lies outside any
// partition (ParseLocation).
func OpenAt(path string, offset int64) (*Store, error) {
	if offset < 0 {
		return nil, fmt.Errorf("slot: open state: negative offset %d", offset)
	}
	s, err := Open(path)
	if err != nil {
		return nil, err
	}
	s.offset = offset
	return s, nil
}

// Load returns the current state: the valid copy with the highest sequence, or
// Fresh() when neither copy is valid.
func (s *Store) Load() (State, error) {
	area := make([]byte, Size)
	// A short file reads as far as it goes; the missing bytes stay zero.
	if _, err := s.f.ReadAt(area, s.offset); err != nil && !errors.Is(err, io.EOF) {
		return State{}, fmt.Errorf("slot: read state: %w", err)
	}
	st, seq, index, _ := Pick(area)
	s.seq, s.index, s.loaded = seq, index, true
	return st, nil
}

// Save writes st over the copy Load did not pick, with the next sequence
// number, and syncs it to the device before returning. Save loads first if Load
// was never called.
func (s *Store) Save(st State) error {
	if !s.loaded {
		if _, err := s.Load(); err != nil {
			return err
		}
	}
	next := s.seq + 1
	target := 0
	if s.index == 0 {
		target = 1
	}
	if s.index < 0 {
		next = 1
	}
	b, err := Encode(st, next)
	if err != nil {
		return err
	}
	if _, err := s.f.WriteAt(b, s.offset+int64(target*CopySize)); err != nil {
		return fmt.Errorf("slot: write state copy %d: %w", target, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("slot: sync state: %w", err)
	}
	s.seq, s.index = next, target
	return nil
}

// Close closes the device.
func (s *Store) Close() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("slot: close state: %w", err)
	}
	return nil
}
