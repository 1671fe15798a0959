package main

import (
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Watchdog settings: the first stage (ggboot) arms the hardware watchdog
// before it boots this slot; gginit opens it again and pets it.
const (
	watchdogDevice  = "/dev/watchdog"
	watchdogTimeout = 60 // seconds
	watchdogPet     = 5 * time.Second
)

// watchdog pets /dev/watchdog while the slot is healthy: always on a
// committed slot (gginit is alive), and on a trial boot (ggcore.trial=1)
// only while ggcore runs, so that a trial slot whose core dies or never
// starts is reset and spends its next try.
type watchdog struct {
	trial   bool
	running atomic.Bool // ggcore is running
}

// startWatchdog opens the watchdog, if the machine has one, and pets it
// from then on. The returned watchdog is usable (and does nothing) without
// a device.
func startWatchdog(trial bool) *watchdog {
	w := &watchdog{trial: trial}
	f, err := os.OpenFile(watchdogDevice, os.O_WRONLY, 0)
	if err != nil {
		return w
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, watchdogTimeout); err != nil {
		say("watchdog: set timeout: %v", err)
	}
	say("watchdog armed (%d s; trial boot: %t)", watchdogTimeout, trial)
	go func() {
		for {
			if !w.trial || w.running.Load() {
				unix.IoctlWatchdogKeepalive(int(f.Fd()))
			}
			time.Sleep(watchdogPet)
		}
	}()
	return w
}

// exited handles an end of ggcore: on a trial boot the slot has failed
// this try, so the machine reboots into the first stage at once.
func (w *watchdog) exited() {
	w.running.Store(false)
	if !w.trial {
		return
	}
	say("trial boot: ggcore exited; rebooting to spend this try")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		say("reboot: %v", err)
	}
}
