package slot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// newDisk returns the path of a zeroed 1 MiB file standing in for the state partition.
func newDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "state.img")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func openT(t *testing.T, p string) *Store {
	t.Helper()
	s, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func loadT(t *testing.T, p string) State {
	t.Helper()
	s := openT(t, p)
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var armed = State{Active: A, Trial: B, TriesLeft: 3, Deployment: "d-42", TrialVersion: "1.1.0", TrialSecurityVersion: 2}

var failed = State{Active: A, Result: &Result{Deployment: "d-42", Slot: B, Version: "1.1.0", Status: StatusFailure,
	Reason: "slot B did not become healthy in 3 boots", At: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}}

func TestLoadSave(t *testing.T) {
	tests := []struct {
		name  string
		saves []State
		want  State
	}{
		{"fresh disk boots A", nil, State{Active: A}},
		{"one save", []State{armed}, armed},
		{"second save wins", []State{armed, failed}, failed},
		{"many saves, last wins", []State{armed, failed, armed, {Active: B}}, State{Active: B}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newDisk(t)
			for _, st := range tt.saves {
				// A new Store each time, as ggboot and ggcore each open it once per boot.
				s := openT(t, p)
				if err := s.Save(st); err != nil {
					t.Fatal(err)
				}
			}
			if got := loadT(t, p); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Load = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSaveAlternatesCopies(t *testing.T) {
	p := newDisk(t)
	s := openT(t, p)
	for i, st := range []State{armed, failed, armed} {
		if err := s.Save(st); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(p)
		got, seq, idx, ok := Pick(b[:Size])
		if !ok || seq != uint64(i+1) || idx != i%2 || !reflect.DeepEqual(got, st) {
			t.Fatalf("save %d: picked copy %d seq %d ok %v state %+v", i, idx, seq, ok, got)
		}
		// The other copy still holds the previous state.
		if i > 0 {
			if _, q, err := Decode(b[(1-idx)*CopySize : (2-idx)*CopySize]); err != nil || q != uint64(i) {
				t.Fatalf("save %d: older copy seq %d err %v", i, q, err)
			}
		}
	}
}

func TestSaveRejectsInvalidState(t *testing.T) {
	s := openT(t, newDisk(t))
	for _, st := range []State{{}, {Active: "C"}, {Active: A, Trial: "X"}, {Active: A, TriesLeft: -1},
		{Active: A, Deployment: strings.Repeat("x", CopySize)}} {
		if err := s.Save(st); err == nil {
			t.Errorf("Save(%+v) succeeded", st)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(armed, 7)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:CopySize-1]},
		{"zeros", make([]byte, CopySize)},
		{"bad magic", mut(func(b []byte) { b[0] = 'X' })},
		{"flipped JSON byte", mut(func(b []byte) { b[headerSize+2] ^= 1 })},
		{"flipped sequence", mut(func(b []byte) { b[9] ^= 1 })},
		{"flipped checksum", mut(func(b []byte) { b[CopySize-1] ^= 1 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Decode(tt.b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode: err %v, want ErrInvalid", err)
			}
		})
	}
	if st, seq, err := Decode(good); err != nil || seq != 7 || !reflect.DeepEqual(st, armed) {
		t.Fatalf("Decode(good) = %+v, %d, %v", st, seq, err)
	}
}

// TestTornWrite cuts the write of a new state at every 512-byte sector boundary
// and at random byte offsets, and, separately, lets only some of its sectors
// reach the disk: every time, Load returns the old state or the new one.
func TestTornWrite(t *testing.T) {
	for _, before := range [][]State{{failed}, {armed, failed}, {failed, armed, failed}} {
		old := before[len(before)-1]
		base := newDisk(t)
		for _, st := range before {
			if err := openT(t, base).Save(st); err != nil {
				t.Fatal(err)
			}
		}
		img, _ := os.ReadFile(base)
		_, seq, idx, _ := Pick(img[:Size])
		target := 1 - idx
		newState := armed
		newCopy, err := Encode(newState, seq+1)
		if err != nil {
			t.Fatal(err)
		}
		check := func(t *testing.T, torn []byte, what string) {
			t.Helper()
			got, _, _, ok := Pick(torn[:Size])
			if !ok || (!reflect.DeepEqual(got, old) && !reflect.DeepEqual(got, newState)) {
				t.Fatalf("%s: Load = %+v (ok %v), want old %+v or new %+v", what, got, ok, old, newState)
			}
		}
		cuts := []int{}
		for k := 0; k <= CopySize; k += 512 {
			cuts = append(cuts, k)
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(before))))
		for range 200 {
			cuts = append(cuts, rng.IntN(CopySize+1))
		}
		for _, k := range cuts {
			torn := bytes.Clone(img)
			copy(torn[target*CopySize:], newCopy[:k])
			check(t, torn, "cut at byte "+itoa(k))
			if k == CopySize {
				if got, _, _, _ := Pick(torn[:Size]); !reflect.DeepEqual(got, newState) {
					t.Fatalf("complete write: Load = %+v, want new", got)
				}
			}
		}
		// Sectors written out of order: any subset of the 8 sectors.
		for mask := 0; mask < 1<<8; mask++ {
			torn := bytes.Clone(img)
			for sec := 0; sec < 8; sec++ {
				if mask&(1<<sec) != 0 {
					copy(torn[target*CopySize+sec*512:], newCopy[sec*512:(sec+1)*512])
				}
			}
			check(t, torn, "sector mask "+itoa(mask))
		}
		// Through the Store on a real file too: a cut write then a fresh Load.
		for _, k := range []int{0, 511, 512, 4000, CopySize - 1} {
			p := filepath.Join(t.TempDir(), "torn.img")
			torn := bytes.Clone(img)
			copy(torn[target*CopySize:], newCopy[:k])
			if err := os.WriteFile(p, torn, 0o600); err != nil {
				t.Fatal(err)
			}
			if got := loadT(t, p); !reflect.DeepEqual(got, old) {
				t.Fatalf("store, cut at %d: Load = %+v, want old", k, got)
			}
			// And the next Save after the torn one lands and wins.
			s := openT(t, p)
			if _, err := s.Load(); err != nil {
				t.Fatal(err)
			}
			if err := s.Save(newState); err != nil {
				t.Fatal(err)
			}
			if got := loadT(t, p); !reflect.DeepEqual(got, newState) {
				t.Fatalf("store, save after cut at %d: Load = %+v, want new", k, got)
			}
		}
	}
}

func TestShortDevice(t *testing.T) {
	p := filepath.Join(t.TempDir(), "short.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := loadT(t, p); !reflect.DeepEqual(got, Fresh()) {
		t.Fatalf("empty device: Load = %+v, want fresh", got)
	}
	s := openT(t, p)
	if err := s.Save(armed); err != nil {
		t.Fatal(err)
	}
	if got := loadT(t, p); !reflect.DeepEqual(got, armed) {
		t.Fatalf("Load = %+v, want armed", got)
	}
}

func TestOther(t *testing.T) {
	if Other(A) != B || Other(B) != A {
		t.Fatal("Other does not swap A and B")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func FuzzDecode(f *testing.F) {
	for i, st := range []State{armed, failed, Fresh()} {
		b, err := Encode(st, uint64(i))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(make([]byte, CopySize))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, seq, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		// A copy that decodes re-encodes to a copy that decodes to the same state.
		again, err := Encode(st, seq)
		if err != nil {
			t.Fatalf("decoded state does not encode: %v", err)
		}
		st2, seq2, err := Decode(again)
		if err != nil || seq2 != seq || !reflect.DeepEqual(st, st2) {
			t.Fatalf("round trip: %+v %d %v", st2, seq2, err)
		}
	})
}

// FuzzDecodeJSON fuzzes the JSON inside a copy whose framing and checksum are valid.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"active":"A","trial":"B","triesLeft":3}`), uint64(3))
	f.Add([]byte(`{"active":"B","result":{"status":"Failure","at":"2026-12-01T10:00:00Z"}}`), uint64(9))
	f.Add([]byte(`{"active":"A"} {}`), uint64(1))
	f.Fuzz(func(t *testing.T, js []byte, seq uint64) {
		if len(js) > MaxJSON {
			return
		}
		b := make([]byte, CopySize)
		copy(b, magic)
		binary.BigEndian.PutUint64(b[len(magic):], seq)
		binary.BigEndian.PutUint32(b[len(magic)+8:], uint32(len(js)))
		copy(b[headerSize:], js)
		sum := sha256.Sum256(b[:CopySize-sha256.Size])
		copy(b[CopySize-sha256.Size:], sum[:])
		st, got, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if got != seq || st.Validate() != nil {
			t.Fatalf("decoded seq %d (want %d), state %+v", got, seq, st)
		}
		again, err := Encode(st, seq)
		if err != nil {
			return // re-encoding may escape characters and outgrow a copy
		}
		if st2, _, err := Decode(again); err != nil || !reflect.DeepEqual(st, st2) {
			t.Fatalf("round trip: %+v %v", st2, err)
		}
	})
}

// TestOpenAt reads and writes a state inside a larger image, leaving the
// bytes around it alone.
func TestOpenAt(t *testing.T) {
	p := newDisk(t)
	const off = 1 << 19
	s, err := OpenAt(p, off)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(armed); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !bytes.Equal(b[:off], make([]byte, off)) || !bytes.Equal(b[off+Size:], make([]byte, len(b)-off-Size)) {
		t.Fatal("OpenAt wrote outside the state")
	}
	if got, _, _, ok := Pick(b[off : off+Size]); !ok || !reflect.DeepEqual(got, armed) {
		t.Fatalf("state at the offset = %+v (ok %v)", got, ok)
	}
	if _, err := OpenAt(p, -1); err == nil {
		t.Fatal("OpenAt accepted a negative offset")
	}
}

// TestParseLocation reads ggcore.state= as ggboot and the core both do.
func TestParseLocation(t *testing.T) {
	tests := []struct {
		in   string
		dev  string
		off  int64
		fail bool
	}{
		{"/dev/vdb1", "/dev/vdb1", 0, false},
		{"/dev/mmcblk0@1048576", "/dev/mmcblk0", 1 << 20, false},
		{"/dev/mmcblk0@0x100000", "/dev/mmcblk0", 1 << 20, false},
		{"/dev/mmcblk0@100", "", 0, true},
		{"/dev/mmcblk0@-512", "", 0, true},
		{"/dev/mmcblk0@", "", 0, true},
		{"@512", "", 0, true},
		{"", "", 0, true},
	}
	for _, tt := range tests {
		dev, off, err := ParseLocation(tt.in)
		if (err != nil) != tt.fail || dev != tt.dev || off != tt.off {
			t.Errorf("ParseLocation(%q) = %q, %d, %v", tt.in, dev, off, err)
		}
	}
}

func TestPartition(t *testing.T) {
	tests := []struct {
		disk string
		n    int
		want string
	}{
		{"/dev/vdb", 1, "/dev/vdb1"},
		{"/dev/vdb", 3, "/dev/vdb3"},
		{"/dev/sda", 2, "/dev/sda2"},
		{"/dev/mmcblk0", 1, "/dev/mmcblk0p1"},
		{"/dev/mmcblk1", 3, "/dev/mmcblk1p3"},
		{"/dev/nvme0n1", 1, "/dev/nvme0n1p1"},
		{"/dev/loop7", 2, "/dev/loop7p2"},
	}
	for _, tt := range tests {
		if got := Partition(tt.disk, tt.n); got != tt.want {
			t.Errorf("Partition(%q, %d) = %q, want %q", tt.disk, tt.n, got, tt.want)
		}
	}
}
