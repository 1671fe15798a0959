package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// buildTimeFile holds the image's build time in Unix seconds
// (initramfs/build.sh writes it: the commit's time).
const buildTimeFile = "/etc/gginit/build-time"

// clockFloor raises a clock that is before the image's build time to
// it: a gateway without a battery-backed clock boots in 1970, and a
// certificate made after the image cannot be valid then. ggcore sets the
// exact time later (ggcore.time).
func clockFloor() {
	data, err := os.ReadFile(buildTimeFile)
	if err != nil {
		say("clock: %s (no build time: %v)", time.Now().UTC().Format(time.RFC3339), err)
		return
	}
	floor, err := parseBuildTime(string(data))
	if err != nil {
		say("clock: %v", err)
		return
	}
	now := time.Now()
	if !now.Before(floor) {
		say("clock: %s (not before the image's build time %s)", now.UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339))
		return
	}
	ts := unix.NsecToTimespec(floor.UnixNano())
	if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
		say("clock: %s is before the image's build time %s and cannot be set: %v", now.UTC().Format(time.RFC3339),
			floor.UTC().Format(time.RFC3339), err)
		return
	}
	say("clock: %s was before the image's build time; set to %s until ggcore synchronises it",
		now.UTC().Format(time.RFC3339), floor.UTC().Format(time.RFC3339))
}

// parseBuildTime reads Unix seconds.
func parseBuildTime(s string) (time.Time, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, fmt.Errorf("build time %q is not Unix seconds", strings.TrimSpace(s))
	}
	return time.Unix(n, 0), nil
}
