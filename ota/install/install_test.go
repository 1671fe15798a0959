package install

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ggcore/ggcore/ota/release"
	"github.com/ggcore/ggcore/ota/slot"
)

var q35 = release.Compatible{Arch: "amd64", Board: "qemu-q35", Flavor: "tpm"}

// newKey returns a release signing key.
func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// build returns a signed release with a kernel and an initramfs of the
// given sizes (random contents).
func build(t testing.TB, key crypto.Signer, c release.Compatible, version string, sv uint32, kernel, initramfs int) []byte {
	t.Helper()
	parts := map[string]io.Reader{}
	for name, n := range map[string]int{release.PartKernel: kernel, release.PartInitramfs: initramfs} {
		b := make([]byte, n)
		rand.Read(b)
		parts[name] = bytes.NewReader(b)
	}
	var out bytes.Buffer
	m := release.Manifest{Compatible: c, Version: version, SecurityVersion: sv}
	if err := release.Build(&out, m, parts, key); err != nil {
		t.Fatalf("release.Build: %v", err)
	}
	return out.Bytes()
}

// headerSize is the size of a release's header.
func headerSize(t testing.TB, rel []byte) int64 {
	t.Helper()
	h, err := release.ReadUnverifiedHeader(bytes.NewReader(rel))
	if err != nil {
		t.Fatal(err)
	}
	return h.Size
}

// disk makes a system disk of plain files: a zeroed state partition and
// two slots of the given sizes filled with random bytes, so that any
// write shows.
func disk(t testing.TB, slotA, slotB int) Disk {
	t.Helper()
	dir := t.TempDir()
	d := SystemDisk(dir)
	write := func(path string, b []byte) {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(d.State, make([]byte, 1<<20))
	for _, s := range []struct {
		path string
		n    int
	}{{d.A, slotA}, {d.B, slotB}} {
		b := make([]byte, s.n)
		rand.Read(b)
		write(s.path, b)
	}
	return d
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putRelease writes rel at the start of a slot, as an earlier install did.
func putRelease(t testing.TB, path string, rel []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(rel, 0); err != nil {
		t.Fatal(err)
	}
}

func saveState(t testing.TB, d Disk, st slot.State) {
	t.Helper()
	s, err := slot.Open(d.State)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Save(st); err != nil {
		t.Fatal(err)
	}
}

func loadState(t testing.TB, d Disk) slot.State {
	t.Helper()
	s, err := slot.Open(d.State)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fakeCounter is a TPM counter in memory.
type fakeCounter struct{ v uint64 }

func (c *fakeCounter) ReadCounter() (uint64, bool, error) { return c.v, c.v > 0, nil }
func (c *fakeCounter) AdvanceCounter(to uint64) (uint64, error) {
	c.v = max(c.v, to)
	return c.v, nil
}

// TestInstallRefusals feeds releases that must be refused and checks
// that each one names its reason and leaves the running slot and the
// state untouched, and, when refused from its header, the inactive slot
// byte for byte too.
func TestInstallRefusals(t *testing.T) {
	key, other := newKey(t), newKey(t)
	good := build(t, key, q35, "1.3.0", 2, 200<<10, 300<<10)
	hs := headerSize(t, good)

	unsigned := func() []byte {
		// The manifest with a signature length of 0 and no signature.
		m := binary.BigEndian.Uint32(good[8:12])
		b := append([]byte(nil), good[:12+m]...)
		b = append(b, 0, 0)
		return append(b, good[hs:]...)
	}()
	tamperedManifest := bytes.Replace(good, []byte(`"1.3.0"`), []byte(`"1.3.1"`), 1)
	tamperedPayload := append([]byte(nil), good...)
	tamperedPayload[len(tamperedPayload)-10] ^= 0xff
	sum := sha256.Sum256(good)

	tests := []struct {
		name string
		rel  []byte
		opts Options
		// slotB is slot B's size; 0 means 4 MiB.
		slotB int
		// counter, when set, is the TPM counter's value.
		counter uint64
		want    error
		// wroteSlot: the refusal comes after writing began, so only the
		// state and the running slot are checked.
		wroteSlot bool
	}{
		{name: "unsigned", rel: unsigned, want: release.ErrBadSignature},
		{name: "tampered manifest", rel: tamperedManifest, want: release.ErrBadSignature},
		{name: "unknown key", rel: build(t, other, q35, "1.3.0", 2, 1000, 1000), want: release.ErrUnknownKey},
		{name: "foreign board", rel: build(t, key, release.Compatible{Arch: "amd64", Board: "rpi4", Flavor: "tpm"}, "1.3.0", 2, 1000, 1000), want: release.ErrIncompatible},
		{name: "foreign arch", rel: build(t, key, release.Compatible{Arch: "arm64", Board: "qemu-q35", Flavor: "tpm"}, "1.3.0", 2, 1000, 1000), want: release.ErrIncompatible},
		{name: "downgrade below the committed release", rel: build(t, key, q35, "1.1.0", 1, 1000, 1000), want: release.ErrDowngrade},
		{name: "downgrade below the TPM counter", rel: good, counter: 3, want: release.ErrDowngrade},
		{name: "no space", rel: good, slotB: 400 << 10, want: release.ErrNoSpace},
		{name: "not a release", rel: []byte("#!/bin/sh\necho hello\n"), want: release.ErrMalformed},
		{name: "size not the deployment's", rel: good, opts: Options{Size: int64(len(good)) + 1}, want: release.ErrMalformed},
		{name: "hash mismatch in the payload", rel: tamperedPayload, want: release.ErrHashMismatch, wroteSlot: true},
		{name: "truncated payload", rel: good[:len(good)-1000], want: release.ErrMalformed, wroteSlot: true},
		{name: "file hash not the deployment's", rel: good, opts: Options{SHA256: hex.EncodeToString(make([]byte, 32))}, want: release.ErrHashMismatch, wroteSlot: true},
	}
	_ = sum
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := disk(t, 4<<20, cmpOr(tt.slotB, 4<<20))
			// Slot A runs release 1.2.0, security version 2.
			putRelease(t, d.A, build(t, key, q35, "1.2.0", 2, 1000, 1000))
			saveState(t, d, slot.State{Active: slot.A})
			stateBefore, aBefore, bBefore := readFile(t, d.State), readFile(t, d.A), readFile(t, d.B)

			v, err := release.NewVerifier(key.Public())
			if err != nil {
				t.Fatal(err)
			}
			sys := &System{Disk: d, Running: slot.A, Compatible: q35, Verifier: v}
			if tt.counter > 0 {
				sys.Counter = &fakeCounter{v: tt.counter}
			}
			_, err = sys.Install(context.Background(), bytes.NewReader(tt.rel), tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Install: %v; want %v", err, tt.want)
			}
			t.Logf("refused: %v", err)
			if !bytes.Equal(readFile(t, d.State), stateBefore) {
				t.Error("the slot state changed")
			}
			if !bytes.Equal(readFile(t, d.A), aBefore) {
				t.Error("the running slot A was written")
			}
			if !tt.wroteSlot && !bytes.Equal(readFile(t, d.B), bBefore) {
				t.Error("the inactive slot B was written before the release was refused")
			}
			if st := loadState(t, d); st.Trial != "" {
				t.Errorf("slot %s armed after a refusal", st.Trial)
			}
		})
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// TestInstallArms installs a good release into the inactive slot (B when
// A runs, A when B runs) and checks it lands verbatim and armed.
func TestInstallArms(t *testing.T) {
	key := newKey(t)
	v, err := release.NewVerifier(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	rel := build(t, key, q35, "1.3.0", 3, 1<<20, 2<<20+17)
	sum := sha256.Sum256(rel)
	for _, running := range []string{slot.A, slot.B} {
		t.Run("running "+running, func(t *testing.T) {
			d := disk(t, 4<<20, 4<<20)
			target := slot.Other(running)
			putRelease(t, d.Slot(running), build(t, key, q35, "1.2.0", 2, 1000, 1000))
			saveState(t, d, slot.State{Active: running})
			runningBefore := readFile(t, d.Slot(running))
			targetBefore := readFile(t, d.Slot(target))

			var calls []int64
			sys := &System{Disk: d, Running: running, Compatible: q35, Verifier: v, Counter: &fakeCounter{v: 2}}
			res, err := sys.Install(context.Background(), bytes.NewReader(rel), Options{
				Deployment: "dep-1", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(rel)),
				Progress: func(written, total int64) {
					if total != int64(len(rel)) {
						t.Errorf("progress total %d, want %d", total, len(rel))
					}
					calls = append(calls, written)
				},
			})
			if err != nil {
				t.Fatalf("Install: %v", err)
			}
			if res.Slot != target || res.Version != "1.3.0" || res.SecurityVersion != 3 || res.Bytes != int64(len(rel)) {
				t.Errorf("result %+v", res)
			}
			got := readFile(t, d.Slot(target))
			if !bytes.Equal(got[:len(rel)], rel) {
				t.Error("the slot does not hold the release verbatim")
			}
			if !bytes.Equal(got[len(rel):], targetBefore[len(rel):]) {
				t.Error("bytes past the release's end were written")
			}
			if !bytes.Equal(readFile(t, d.Slot(running)), runningBefore) {
				t.Error("the running slot was written")
			}
			if len(calls) < 3 || calls[len(calls)-1] != int64(len(rel)) {
				t.Errorf("progress calls %v: want several, ending at %d", calls, len(rel))
			}
			for i := 1; i < len(calls); i++ {
				if calls[i] <= calls[i-1] {
					t.Errorf("progress went from %d to %d", calls[i-1], calls[i])
				}
			}
			want := slot.State{Active: running, Trial: target, TriesLeft: 3, Deployment: "dep-1", TrialVersion: "1.3.0", TrialSecurityVersion: 3}
			if st := loadState(t, d); !equalState(st, want) {
				t.Errorf("state %+v, want %+v", st, want)
			}
		})
	}
}

func equalState(a, b slot.State) bool {
	if (a.Result == nil) != (b.Result == nil) {
		return false
	}
	if a.Result != nil && !sameResult(*a.Result, *b.Result) {
		return false
	}
	a.Result, b.Result = nil, nil
	return a == b
}

// TestInstallDuringTrial refuses to install while the running slot is on
// trial: the other slot is the committed one, the fallback.
func TestInstallDuringTrial(t *testing.T) {
	key := newKey(t)
	v, _ := release.NewVerifier(key.Public())
	d := disk(t, 1<<20, 1<<20)
	saveState(t, d, slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 2, Deployment: "dep-1", TrialVersion: "1.3.0"})
	aBefore, stBefore := readFile(t, d.A), readFile(t, d.State)
	sys := &System{Disk: d, Running: slot.B, Compatible: q35, Verifier: v}
	_, err := sys.Install(context.Background(), bytes.NewReader(build(t, key, q35, "1.4.0", 3, 100, 100)), Options{})
	if !errors.Is(err, ErrTrialRunning) {
		t.Fatalf("Install during a trial: %v; want ErrTrialRunning", err)
	}
	if !bytes.Equal(readFile(t, d.A), aBefore) || !bytes.Equal(readFile(t, d.State), stBefore) {
		t.Error("the committed slot or the state changed")
	}
}

// TestInstallReplacesUnbootedTrial installs over a slot armed but not
// booted yet: the new release is armed in its place.
func TestInstallReplacesUnbootedTrial(t *testing.T) {
	key := newKey(t)
	v, _ := release.NewVerifier(key.Public())
	d := disk(t, 1<<20, 1<<20)
	saveState(t, d, slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 3, Deployment: "dep-1", TrialVersion: "1.3.0", TrialSecurityVersion: 3})
	sys := &System{Disk: d, Running: slot.A, Compatible: q35, Verifier: v}
	if _, err := sys.Install(context.Background(), bytes.NewReader(build(t, key, q35, "1.4.0", 4, 100, 100)), Options{Deployment: "dep-2"}); err != nil {
		t.Fatal(err)
	}
	st := loadState(t, d)
	if st.Trial != slot.B || st.Deployment != "dep-2" || st.TrialVersion != "1.4.0" || st.TriesLeft != 3 {
		t.Errorf("state %+v: want slot B armed for dep-2, 1.4.0", st)
	}
}

// TestCommit commits a healthy trial boot, and leaves the state alone
// when the check never passes or the boot is no trial.
func TestCommit(t *testing.T) {
	armed := slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 2, Deployment: "dep-1", TrialVersion: "1.3.0", TrialSecurityVersion: 3}
	t.Run("healthy after a while", func(t *testing.T) {
		d := disk(t, 4096, 4096)
		saveState(t, d, armed)
		c := &fakeCounter{v: 2}
		sys := &System{Disk: d, Running: slot.B, Counter: c}
		fails := 2
		res, err := sys.Commit(context.Background(), func(context.Context) error {
			if fails > 0 {
				fails--
				return errors.New("control plane not reached yet")
			}
			return nil
		}, time.Minute)
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		if c.v != 3 {
			t.Errorf("counter %d after commit, want 3", c.v)
		}
		want := slot.State{Active: slot.B, Result: &slot.Result{Deployment: "dep-1", Slot: slot.B, Version: "1.3.0", Status: slot.StatusSuccess, At: res.At}}
		if st := loadState(t, d); !equalState(st, want) {
			t.Errorf("state %+v (result %+v), want %+v", st, st.Result, want)
		}
		// Reported: the result goes.
		if err := sys.ClearResult(res); err != nil {
			t.Fatal(err)
		}
		if st := loadState(t, d); st.Result != nil || st.Active != slot.B {
			t.Errorf("after ClearResult: %+v", st)
		}
	})
	t.Run("never healthy", func(t *testing.T) {
		d := disk(t, 4096, 4096)
		saveState(t, d, armed)
		before := readFile(t, d.State)
		c := &fakeCounter{v: 2}
		sys := &System{Disk: d, Running: slot.B, Counter: c}
		_, err := sys.Commit(context.Background(), func(context.Context) error { return errors.New("broker not serving") }, 1500*time.Millisecond)
		if !errors.Is(err, ErrUnhealthy) {
			t.Fatalf("Commit: %v; want ErrUnhealthy", err)
		}
		if c.v != 2 || !bytes.Equal(readFile(t, d.State), before) {
			t.Error("an unhealthy trial changed the counter or the state")
		}
	})
	t.Run("not a trial", func(t *testing.T) {
		d := disk(t, 4096, 4096)
		saveState(t, d, armed)
		sys := &System{Disk: d, Running: slot.A}
		_, err := sys.Commit(context.Background(), func(context.Context) error { return nil }, time.Second)
		if !errors.Is(err, ErrNotTrial) {
			t.Fatalf("Commit on the committed slot: %v; want ErrNotTrial", err)
		}
	})
}

// TestInstallThroughput installs a 16 MiB release into a file slot and
// logs the time per MiB and the bytes written per update.
func TestInstallThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 16 MiB")
	}
	key := newKey(t)
	v, _ := release.NewVerifier(key.Public())
	rel := build(t, key, q35, "1.3.0", 3, 6<<20, 10<<20)
	dir := t.TempDir()
	d := SystemDisk(dir)
	if err := os.WriteFile(d.State, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d.A, d.B} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 32<<20); err != nil {
			t.Fatal(err)
		}
	}
	sys := &System{Disk: d, Running: slot.A, Compatible: q35, Verifier: v}
	var written int64
	res, err := sys.Install(context.Background(), bytes.NewReader(rel), Options{Progress: func(w, _ int64) { written = w }})
	if err != nil {
		t.Fatal(err)
	}
	mib := float64(len(rel)) / (1 << 20)
	t.Logf("installed %.1f MiB in %v: %.1f ms/MiB; bytes written: %d to the slot (payload %d + header %d) + %d of slot state",
		mib, res.Took.Round(time.Millisecond), float64(res.Took.Microseconds())/1000/mib,
		written, len(rel)-int(headerSize(t, rel)), headerSize(t, rel), slot.CopySize)
	if written != int64(len(rel)) {
		t.Errorf("wrote %d bytes, want the release's %d", written, len(rel))
	}
	_ = filepath.Join
}

// TestInstallStateAtOffset: with the state kept at an offset of a device
// (ggcore.state=DEVICE@OFFSET, an SD card whose partition 1 is the boot
// partition), an install arms the trial there and leaves every byte
// before the offset alone.
func TestInstallStateAtOffset(t *testing.T) {
	key := newKey(t)
	v, err := release.NewVerifier(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	d := disk(t, 4<<20, 4<<20)
	const offset = 512 << 10
	front := make([]byte, offset)
	rand.Read(front)
	if err := os.WriteFile(d.State, append(front, make([]byte, 1<<20)...), 0o600); err != nil {
		t.Fatal(err)
	}
	d.StateOffset = offset
	putRelease(t, d.A, build(t, key, q35, "1.2.0", 2, 1000, 1000))
	rel := build(t, key, q35, "1.3.0", 3, 1000, 2000)
	sys := &System{Disk: d, Running: slot.A, Compatible: q35, Verifier: v, Counter: &fakeCounter{v: 2}}
	if _, err := sys.Install(context.Background(), bytes.NewReader(rel), Options{Deployment: "dep-off"}); err != nil {
		t.Fatalf("Install: %v", err)
	}
	if got := readFile(t, d.State)[:offset]; !bytes.Equal(got, front) {
		t.Error("bytes before the state's offset were written")
	}
	s, err := slot.OpenAt(d.State, offset)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.Load()
	if err != nil || st.Trial != slot.B || st.Deployment != "dep-off" {
		t.Errorf("state at the offset: %+v, %v; want a trial of B for dep-off", st, err)
	}
}
