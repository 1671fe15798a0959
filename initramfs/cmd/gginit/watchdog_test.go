package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/ota/slot"
)

// petStep is one turn of the pet loop: the clock, whether ggcore runs and
// what the slot state reader answers; pet is the decision expected.
type petStep struct {
	at        time.Duration // since gginit started
	running   bool
	committed bool
	stateErr  error
	pet       bool
}

func TestWatchdogPet(t *testing.T) {
	const window = 300 * time.Second
	readErr := errors.New("no such device")
	tests := []struct {
		name  string
		trial bool
		steps []petStep
		said  []string // console lines expected, in order, each by a fragment
	}{
		{"committed boot pets always", false, []petStep{
			{at: 0, pet: true},
			{at: window + time.Second, pet: true},
			{at: time.Hour, pet: true},
		}, nil},
		{"trial pets only while ggcore runs", true, []petStep{
			{at: 0, running: false, pet: false},
			{at: 5 * time.Second, running: true, pet: true},
			{at: 10 * time.Second, running: false, pet: false},
		}, nil},
		{"hung trial stops petting at the window", true, []petStep{
			{at: 5 * time.Second, running: true, pet: true},
			{at: window - time.Second, running: true, pet: true},
			{at: window, running: true, pet: false},
			{at: window + 5*time.Second, running: true, pet: false},
			// Stopped for good: a commit now comes too late.
			{at: window + 10*time.Second, running: true, committed: true, pet: false},
		}, []string{"trial boot not committed within 300 s; letting the watchdog reset the machine"}},
		{"committed trial pets as a committed boot", true, []petStep{
			{at: 5 * time.Second, running: true, pet: true},
			{at: 100 * time.Second, running: true, committed: true, pet: true},
			{at: window + time.Second, running: false, pet: true},
			{at: time.Hour, running: false, pet: true},
		}, []string{"trial boot committed"}},
		{"commit seen at the window's end", true, []petStep{
			{at: window, running: true, committed: true, pet: true},
			{at: 2 * window, running: true, pet: true},
		}, []string{"trial boot committed"}},
		{"unreadable state is not a commit", true, []petStep{
			{at: 5 * time.Second, running: true, stateErr: readErr, pet: true},
			{at: 10 * time.Second, running: true, stateErr: readErr, pet: true},
			{at: window, running: true, stateErr: readErr, pet: false},
		}, []string{"cannot read the slot state: no such device", "not committed within 300 s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var now time.Time
			var step petStep
			var said []string
			w := &watchdog{trial: tt.trial, window: window, start: start,
				now:       func() time.Time { return now },
				committed: func() (bool, error) { return step.committed, step.stateErr },
				say:       func(f string, a ...any) { said = append(said, fmt.Sprintf(f, a...)) }}
			for i, s := range tt.steps {
				step, now = s, start.Add(s.at)
				w.running.Store(s.running)
				if got := w.pet(); got != s.pet {
					t.Errorf("step %d (at %v, running %t, committed %t): pet = %t, want %t", i, s.at, s.running, s.committed, got, s.pet)
				}
			}
			if len(said) != len(tt.said) {
				t.Fatalf("console lines %q, want %d matching %q", said, len(tt.said), tt.said)
			}
			for i, want := range tt.said {
				if !strings.Contains(said[i], want) {
					t.Errorf("console line %d = %q, want it to contain %q", i, said[i], want)
				}
			}
		})
	}
}

func TestWatchdogOnTrialAfterCommit(t *testing.T) {
	w := &watchdog{trial: true, window: time.Minute, start: time.Now(), now: time.Now,
		committed: func() (bool, error) { return true, nil }, say: func(string, ...any) {}}
	if !w.onTrial() {
		t.Fatal("a trial boot is on trial before its commit is seen")
	}
	w.pet()
	if w.onTrial() {
		t.Fatal("a committed trial boot is still on trial: an exit of ggcore would reboot it")
	}
}

func TestParseWatchdogSettings(t *testing.T) {
	tests := []struct {
		line string
		want watchdogSettings
		bad  bool // a setting is reported as not parsing
	}{
		{"console=ttyS0", watchdogSettings{timeout: 60, window: 300 * time.Second, state: "/dev/vdb1"}, false},
		{"ggcore.slot=B ggcore.trial=1 ggcore.system=/dev/vdb ggcore.watchdog=10 ggcore.trialwindow=5",
			watchdogSettings{timeout: 10, trial: true, window: 5 * time.Second, state: "/dev/vdb1", slot: "B"}, false},
		{"ggcore.system=/dev/mmcblk0 ggcore.slot=A",
			watchdogSettings{timeout: 60, window: 300 * time.Second, state: "/dev/mmcblk0p1", slot: "A"}, false},
		{"ggcore.system=/dev/mmcblk0 ggcore.state=/dev/mmcblk0@0x100000 ggcore.watchdog=0",
			watchdogSettings{timeout: 0, window: 300 * time.Second, state: "/dev/mmcblk0@0x100000"}, false},
		{"ggcore.watchdog=soon ggcore.trialwindow=-1",
			watchdogSettings{timeout: 60, window: 300 * time.Second, state: "/dev/vdb1"}, true},
	}
	for _, tt := range tests {
		bad := false
		got := parseWatchdogSettings(parseCmdline(tt.line), func(string, ...any) { bad = true })
		if got != tt.want || bad != tt.bad {
			t.Errorf("parseWatchdogSettings(%q) = %+v (reported: %t), want %+v (reported: %t)", tt.line, got, bad, tt.want, tt.bad)
		}
	}
}

func TestIsCommitted(t *testing.T) {
	tests := []struct {
		st      slot.State
		running string
		want    bool
	}{
		{slot.State{Active: slot.B}, slot.B, true},
		{slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 2}, slot.B, false},
		{slot.State{Active: slot.A}, slot.B, false}, // rolled back under it
		{slot.State{Active: slot.A}, "", false},
	}
	for _, tt := range tests {
		if got := isCommitted(tt.st, tt.running); got != tt.want {
			t.Errorf("isCommitted(%+v, %q) = %t, want %t", tt.st, tt.running, got, tt.want)
		}
	}
}

func TestStateCommitted(t *testing.T) {
	path := t.TempDir() + "/state"
	if err := os.WriteFile(path, make([]byte, slot.Size), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := slot.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	read := stateCommitted(path, slot.B)
	for _, tt := range []struct {
		st   slot.State
		want bool
	}{
		{slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 2}, false},
		{slot.State{Active: slot.B}, true},
	} {
		if err := s.Save(tt.st); err != nil {
			t.Fatal(err)
		}
		if got, err := read(); err != nil || got != tt.want {
			t.Errorf("state %+v: committed = %t, %v; want %t", tt.st, got, err, tt.want)
		}
	}
	if _, err := stateCommitted(path+".missing", slot.B)(); err == nil {
		t.Error("a missing state device reads as no error")
	}
}
