package main

import (
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ggcore/ggcore/ota/slot"
)

// Watchdog settings: the first stage (ggboot) arms the hardware watchdog
// before it boots this slot; gginit opens it again and pets it.
const (
	watchdogDevice     = "/dev/watchdog"
	defaultWatchdog    = 60  // seconds, unless ggcore.watchdog= says otherwise
	defaultTrialWindow = 300 // seconds, unless ggcore.trialwindow= says otherwise
	defaultSystem      = "/dev/vdb"
	watchdogPet        = 5 * time.Second
)

// watchdog pets /dev/watchdog while the slot is healthy: always on a
// committed slot (gginit is alive). On a trial boot (ggcore.trial=1) it
// pets only while ggcore runs and only until the trial window has passed,
// unless the slot state shows the trial committed by then: a trial slot
// whose core dies, never starts or hangs is reset and spends its next try.
// Once the trial is committed the boot is treated as a committed one.
type watchdog struct {
	trial     bool
	window    time.Duration
	start     time.Time
	now       func() time.Time
	committed func() (bool, error) // reads the slot state
	say       func(format string, args ...any)

	running   atomic.Bool // ggcore is running
	done      atomic.Bool // the trial has been committed
	expired   bool        // the window passed uncommitted (pet loop only)
	stateErrs bool        // a state read error was reported (pet loop only)
}

// watchdogSettings are gginit's watchdog settings from the kernel command
// line.
type watchdogSettings struct {
	timeout int           // ggcore.watchdog=, seconds; 0: not armed
	trial   bool          // ggcore.trial=1
	window  time.Duration // ggcore.trialwindow=
	state   string        // where the slot state is (slot.ParseLocation)
	slot    string        // ggcore.slot=
}

// parseWatchdogSettings reads the watchdog settings; a setting that does
// not parse is reported and its default used.
func parseWatchdogSettings(args map[string]string, say func(string, ...any)) watchdogSettings {
	seconds := func(key string, def int) int {
		v, ok := args[key]
		if !ok || v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			say("%s=%q is not a number of seconds; using %d", key, v, def)
			return def
		}
		return n
	}
	return watchdogSettings{
		timeout: seconds("ggcore.watchdog", defaultWatchdog),
		trial:   args["ggcore.trial"] == "1",
		window:  time.Duration(seconds("ggcore.trialwindow", defaultTrialWindow)) * time.Second,
		state:   setting(args, "ggcore.state", slot.Partition(setting(args, "ggcore.system", defaultSystem), 1)),
		slot:    args["ggcore.slot"],
	}
}

// stateCommitted returns a reader of the slot state at loc that reports
// whether the trial of running has been committed: no trial left and
// running the active slot.
func stateCommitted(loc, running string) func() (bool, error) {
	return func() (bool, error) {
		path, off, err := slot.ParseLocation(loc)
		if err != nil {
			return false, err
		}
		s, err := slot.OpenAt(path, off)
		if err != nil {
			return false, err
		}
		defer s.Close()
		st, err := s.Load()
		if err != nil {
			return false, err
		}
		return isCommitted(st, running), nil
	}
}

// isCommitted reports whether st shows the slot running committed.
func isCommitted(st slot.State, running string) bool {
	return st.Trial == "" && running != "" && st.Active == running
}

// startWatchdog opens the watchdog, if the machine has one and
// ggcore.watchdog is not 0, and pets it from then on. The returned
// watchdog is usable (and does nothing) without a device.
func startWatchdog(args map[string]string) *watchdog {
	cfg := parseWatchdogSettings(args, say)
	w := &watchdog{trial: cfg.trial, window: cfg.window, start: time.Now(), now: time.Now,
		committed: stateCommitted(cfg.state, cfg.slot), say: say}
	if cfg.timeout == 0 {
		say("watchdog not armed (ggcore.watchdog=0)")
		return w
	}
	f, err := os.OpenFile(watchdogDevice, os.O_WRONLY, 0)
	if err != nil {
		return w
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, cfg.timeout); err != nil {
		say("watchdog: set timeout: %v", err)
	}
	if cfg.trial {
		say("watchdog armed (%d s; trial boot: window %d s)", cfg.timeout, int(cfg.window/time.Second))
	} else {
		say("watchdog armed (%d s)", cfg.timeout)
	}
	interval := min(watchdogPet, time.Duration(cfg.timeout)*time.Second/3)
	go func() {
		for {
			if w.pet() {
				unix.IoctlWatchdogKeepalive(int(f.Fd()))
			}
			time.Sleep(interval)
		}
	}()
	return w
}

// pet reports whether the watchdog is to be petted now. Only the pet loop
// calls it.
func (w *watchdog) pet() bool {
	if !w.trial || w.done.Load() {
		return true
	}
	if w.expired {
		return false
	}
	ok, err := w.committed()
	if err != nil && !w.stateErrs {
		w.stateErrs = true
		w.say("trial boot: cannot read the slot state: %v", err)
	}
	if ok {
		w.done.Store(true)
		w.say("trial boot committed; the watchdog is petted as on a committed boot")
		return true
	}
	if w.now().Sub(w.start) >= w.window {
		w.expired = true
		w.say("trial boot not committed within %d s; letting the watchdog reset the machine", int(w.window/time.Second))
		return false
	}
	return w.running.Load()
}

// onTrial reports whether this boot is a trial not committed (yet).
func (w *watchdog) onTrial() bool { return w.trial && !w.done.Load() }

// exited handles an end of ggcore: on a trial boot not committed yet the
// slot has failed this try, so the machine reboots into the first stage
// at once.
func (w *watchdog) exited() {
	w.running.Store(false)
	if !w.onTrial() {
		return
	}
	say("trial boot: ggcore exited; rebooting to spend this try")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		say("reboot: %v", err)
	}
}
