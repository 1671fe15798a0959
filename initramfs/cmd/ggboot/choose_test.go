package main

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ggcore/ggcore/ota/slot"
)

var at = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func TestChoose(t *testing.T) {
	armed := slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 3, Deployment: "d1", TrialVersion: "1.1.0", TrialSecurityVersion: 2}
	spent := armed
	spent.TriesLeft = 0
	failure := func(reason string) slot.State {
		return slot.State{Active: slot.A, Result: &slot.Result{Deployment: "d1", Slot: slot.B, Version: "1.1.0",
			Status: slot.StatusFailure, Reason: reason, At: at}}
	}
	tries := func(n int) slot.State { s := armed; s.TriesLeft = n; return s }
	tests := []struct {
		name      string
		state     slot.State
		bad       map[string]bool // slots that do not verify
		saves     []slot.State
		slot      string
		trial     bool
		try       int
		noBoot    bool
		logSubstr string
	}{
		{name: "fresh disk boots A", state: slot.Fresh(), slot: slot.A, logSubstr: "slot A committed, version v-A sv 1"},
		{name: "committed B", state: slot.State{Active: slot.B}, slot: slot.B},
		{name: "first trial", state: armed, saves: []slot.State{tries(2)}, slot: slot.B, trial: true, try: 1,
			logSubstr: "slot B trial 1 of 3, version v-B sv 1"},
		{name: "third trial", state: tries(1), saves: []slot.State{tries(0)}, slot: slot.B, trial: true, try: 3},
		{name: "tries spent: failure recorded, back to A", state: spent,
			saves: []slot.State{failure("slot B did not become healthy in 3 boots")}, slot: slot.A},
		{name: "trial slot does not verify: failed at once", state: armed, bad: map[string]bool{slot.B: true},
			saves: []slot.State{tries(2), failure("slot B does not verify: B is broken")}, slot: slot.A},
		{name: "active does not verify: other slot", state: slot.State{Active: slot.A}, bad: map[string]bool{slot.A: true},
			slot: slot.B, logSubstr: "WARNING: booting slot B instead of committed slot A"},
		{name: "nothing verifies", state: slot.State{Active: slot.A}, bad: map[string]bool{slot.A: true, slot.B: true}, noBoot: true},
		{name: "trial equal to active is dropped", state: slot.State{Active: slot.A, Trial: slot.A, TriesLeft: 2}, slot: slot.A},
		{name: "invalid state boots A", state: slot.State{Active: "Z"}, slot: slot.A},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var saves []slot.State
			var log strings.Builder
			c := &chooser{
				save: func(s slot.State) error { saves = append(saves, s); return nil },
				verify: func(s string) (*image, error) {
					if tt.bad[s] {
						return nil, fmt.Errorf("%s is broken", s)
					}
					return &image{Version: "v-" + s, SecurityVersion: 1}, nil
				},
				say: func(f string, a ...any) { fmt.Fprintf(&log, f+"\n", a...) },
				now: func() time.Time { return at },
			}
			p, err := c.choose(tt.state)
			if tt.noBoot {
				if err == nil {
					t.Fatalf("choose = %+v, want no bootable slot", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Slot != tt.slot || p.Trial != tt.trial || p.Try != tt.try {
				t.Errorf("plan = slot %s trial %v try %d, want slot %s trial %v try %d", p.Slot, p.Trial, p.Try, tt.slot, tt.trial, tt.try)
			}
			if !reflect.DeepEqual(saves, tt.saves) {
				t.Errorf("saves:\n got %+v\nwant %+v", saves, tt.saves)
			}
			if !strings.Contains(log.String(), tt.logSubstr) {
				t.Errorf("log does not say %q:\n%s", tt.logSubstr, log.String())
			}
		})
	}
}

// TestChooseSaveFails: a trial is never booted without spending a try.
func TestChooseSaveFails(t *testing.T) {
	c := &chooser{
		save:   func(slot.State) error { return errors.New("disk gone") },
		verify: func(s string) (*image, error) { return &image{Version: s}, nil },
		say:    func(string, ...any) {},
		now:    time.Now,
	}
	p, err := c.choose(slot.State{Active: slot.A, Trial: slot.B, TriesLeft: 3})
	if err != nil || p.Slot != slot.A || p.Trial {
		t.Fatalf("choose = %+v, %v; want committed slot A", p, err)
	}
}

func TestSlotCmdline(t *testing.T) {
	tests := []struct {
		line string
		p    plan
		want string
	}{
		{"console=ttyS0 panic=-1 ggcore.system=/dev/vdb\n", plan{Slot: "A"}, "console=ttyS0 panic=-1 ggcore.system=/dev/vdb ggcore.slot=A"},
		{"console=ttyAMA0 ggcore.slot=A ggcore.trial=1 quiet", plan{Slot: "B", Trial: true}, "console=ttyAMA0 quiet ggcore.slot=B ggcore.trial=1"},
	}
	for _, tt := range tests {
		if got := slotCmdline(tt.line, &tt.p); got != tt.want {
			t.Errorf("slotCmdline(%q) = %q, want %q", tt.line, got, tt.want)
		}
	}
}
