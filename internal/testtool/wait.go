package testtool

import (
	"testing"
	"time"
)

// Timeout is how long a test waits for something that must happen: a
// delivery, an acknowledgement, a log line, a process getting ready. It
// is sized for a loaded 2-core CI machine, where several test binaries,
// QEMU and builds share the cores; waits poll for their condition, so
// the size costs nothing when the condition comes quickly.
const Timeout = 30 * time.Second

// Settle is how long a test watches for something that must not happen
// (a message the broker must not deliver) after a control that would
// have come later. It bounds a negative check; it is never a wait for
// something to be ready.
const Settle = 300 * time.Millisecond

// pollInterval is how often Poll looks at its condition.
const pollInterval = 20 * time.Millisecond

// Poll looks at cond until it holds or timeout passes; it reports
// whether cond held.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pollInterval)
	}
	return true
}

// Eventually fails the test unless cond holds within Timeout; what
// names the condition in the failure.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !Poll(Timeout, cond) {
		t.Fatalf("%s: not within %v", what, Timeout)
	}
}
