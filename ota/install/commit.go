package install

import (
	"context"
	"fmt"
	"time"

	"github.com/ggcore/ggcore/ota/slot"
)

// healthPoll is how long Commit waits between two runs of a failing
// health check.
const healthPoll = time.Second

// State loads the slot state.
func (s *System) State() (slot.State, error) {
	store, err := s.Disk.OpenState()
	if err != nil {
		return slot.State{}, fmt.Errorf("install: %w", err)
	}
	defer store.Close()
	st, err := store.Load()
	if err != nil {
		return slot.State{}, fmt.Errorf("install: %w", err)
	}
	return st, nil
}

// OnTrial reports whether this boot is a trial: ggboot booted the slot on
// trial, which is the running one and not the committed one.
func OnTrial(st slot.State, running string) bool {
	return st.Trial != "" && st.Trial == running && st.Active != running
}

// Commit runs on a trial boot. It runs health until it returns nil or
// deadline passes (again every second while it fails), then advances the
// TPM counter to the trial release's security version and saves the
// state with the running slot committed and a Success result for the
// deployment that armed it, which it returns. A health check that never
// passes is ErrUnhealthy with its last error: the caller reboots, and
// ggboot tries the slot again or, after its tries, falls back. A boot
// that is not a trial is ErrNotTrial.
func (s *System) Commit(ctx context.Context, health func(context.Context) error, deadline time.Duration) (*slot.Result, error) {
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	if !OnTrial(st, s.Running) {
		return nil, fmt.Errorf("install: commit: %w (running %s, committed %s, trial %q)", ErrNotTrial, s.Running, st.Active, st.Trial)
	}
	hctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	for {
		err := health(hctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("install: commit: %w", ctx.Err())
		}
		timer := time.NewTimer(healthPoll)
		select {
		case <-hctx.Done():
			timer.Stop()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("install: commit: %w", ctx.Err())
			}
			return nil, fmt.Errorf("install: commit: %w within %v: %w", ErrUnhealthy, deadline, err)
		case <-timer.C:
		}
	}
	s.log().Info("trial boot healthy; committing", "slot", s.Running, "version", st.TrialVersion,
		"security_version", st.TrialSecurityVersion, "health_took", time.Since(start).Round(time.Millisecond))
	// The counter first: a power cut before the state is saved leaves the
	// trial armed, and the next boot commits again. The other order would
	// leave a committed release above a counter that an attacker could
	// then undercut.
	if s.Counter != nil {
		v, err := s.Counter.AdvanceCounter(uint64(st.TrialSecurityVersion))
		if err != nil {
			return nil, fmt.Errorf("install: commit: %w", err)
		}
		s.log().Info("TPM security version counter advanced", "value", v)
	}
	store, err := s.Disk.OpenState()
	if err != nil {
		return nil, fmt.Errorf("install: commit: %w", err)
	}
	defer store.Close()
	if _, err := store.Load(); err != nil {
		return nil, fmt.Errorf("install: commit: %w", err)
	}
	res := &slot.Result{Deployment: st.Deployment, Slot: s.Running, Version: st.TrialVersion,
		Status: slot.StatusSuccess, At: time.Now().UTC()}
	if err := store.Save(slot.State{Active: s.Running, Result: res}); err != nil {
		return nil, fmt.Errorf("install: commit: %w", err)
	}
	return res, nil
}

// ClearResult removes the trial result r from the slot state once the
// core reported it; a newer result recorded meanwhile stays.
func (s *System) ClearResult(r *slot.Result) error {
	store, err := s.Disk.OpenState()
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	defer store.Close()
	st, err := store.Load()
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if st.Result == nil || !sameResult(*st.Result, *r) {
		return nil
	}
	st.Result = nil
	if err := store.Save(st); err != nil {
		return fmt.Errorf("install: clear the reported result: %w", err)
	}
	return nil
}

func sameResult(a, b slot.Result) bool {
	return a.Deployment == b.Deployment && a.Slot == b.Slot && a.Version == b.Version &&
		a.Status == b.Status && a.Reason == b.Reason && a.At.Equal(b.At)
}
