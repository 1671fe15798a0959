package main

import (
	"fmt"
	"time"

	"github.com/ggcore/ggcore/ota/slot"
)

// image is a slot's release, verified, with its parts copied where kexec
// can read them.
type image struct {
	Version         string
	SecurityVersion uint32
	Digest          [32]byte // SHA-256 of the manifest bytes
	Kernel, Initrd  string   // paths of the verified parts
}

// plan is what ggboot boots.
type plan struct {
	Slot  string
	Trial bool
	Try   int // on a trial boot: which try this is (1..slot.DefaultTries)
	Image *image
}

// chooser applies the trial logic to a loaded state. Its functions are the
// outside world: save writes the slot state, verify checks a slot's release
// (and copies its parts), say logs one console line.
type chooser struct {
	save   func(slot.State) error
	verify func(s string) (*image, error)
	say    func(format string, args ...any)
	now    func() time.Time
}

// choose picks the slot to boot from st:
//   - a trial with tries left: one try is spent (and saved) before the trial
//     slot is verified and booted; a trial slot that does not verify has
//     failed at once;
//   - a trial with no tries left has failed: the failure is recorded as the
//     state's Result and the trial cleared;
//   - otherwise the active slot, or, if it does not verify, the other one.
//
// It returns an error only when no slot can be booted.
func (c *chooser) choose(st slot.State) (*plan, error) {
	if err := st.Validate(); err != nil {
		c.say("slot state unusable (%v): booting slot A", err)
		st = slot.Fresh()
	}
	if st.Trial != "" && st.Trial == st.Active {
		c.say("slot state names slot %s both active and on trial: dropping the trial", st.Active)
		st.Trial, st.TriesLeft = "", 0
	}
	if st.Trial != "" {
		if st.TriesLeft > 0 {
			next := st
			next.TriesLeft--
			try := slot.DefaultTries - next.TriesLeft
			if try < 1 {
				try = 1
			}
			c.say("saving slot state: slot %s trial %d of %d", st.Trial, try, slot.DefaultTries)
			if err := c.save(next); err != nil {
				// Booting the trial without spending a try could loop for ever.
				c.say("cannot save the slot state (%v): not booting trial slot %s; booting committed slot %s", err, st.Trial, st.Active)
				return c.committed(st)
			}
			img, err := c.verify(st.Trial)
			if err == nil {
				c.say("slot %s trial %d of %d, version %s sv %d", st.Trial, try, slot.DefaultTries, img.Version, img.SecurityVersion)
				return &plan{Slot: st.Trial, Trial: true, Try: try, Image: img}, nil
			}
			c.say("trial slot %s does not verify: %v", st.Trial, err)
			return c.fail(next, fmt.Sprintf("slot %s does not verify: %v", st.Trial, err))
		}
		return c.fail(st, fmt.Sprintf("slot %s did not become healthy in %d boots", st.Trial, slot.DefaultTries))
	}
	return c.committed(st)
}

// fail records a failed trial in the state, saves it and boots the
// committed slot.
func (c *chooser) fail(st slot.State, reason string) (*plan, error) {
	failed := st.Trial
	st.Result = &slot.Result{Deployment: st.Deployment, Slot: failed, Version: st.TrialVersion,
		Status: slot.StatusFailure, Reason: reason, At: c.now().UTC()}
	st.Trial, st.TriesLeft, st.Deployment, st.TrialVersion, st.TrialSecurityVersion = "", 0, "", "", 0
	c.say("saving slot state: trial of slot %s failed: %s; back to slot %s", failed, reason, st.Active)
	if err := c.save(st); err != nil {
		c.say("cannot save the slot state: %v (the failure is reported after the next save)", err)
	}
	return c.committed(st)
}

// committed boots the active slot, or the other slot when the active one
// does not verify.
func (c *chooser) committed(st slot.State) (*plan, error) {
	img, err := c.verify(st.Active)
	if err == nil {
		c.say("slot %s committed, version %s sv %d", st.Active, img.Version, img.SecurityVersion)
		return &plan{Slot: st.Active, Image: img}, nil
	}
	other := slot.Other(st.Active)
	c.say("WARNING: committed slot %s does not verify: %v; trying slot %s", st.Active, err, other)
	img, err2 := c.verify(other)
	if err2 == nil {
		c.say("WARNING: booting slot %s instead of committed slot %s, version %s sv %d", other, st.Active, img.Version, img.SecurityVersion)
		return &plan{Slot: other, Image: img}, nil
	}
	return nil, fmt.Errorf("no bootable slot: slot %s: %v; slot %s: %v", st.Active, err, other, err2)
}
