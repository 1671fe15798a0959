package main

import (
	"context"
	"runtime/debug"
	"time"
)

// Memory after a burst of connections.
//
// A TLS handshake leaves about a hundred KiB of garbage, so a thousand
// devices connecting at once (a gateway's restart, a network coming back)
// take the heap far above what their connections keep. Two things follow
// with the collector's usual target (gcPercent):
//
//   - what each connection keeps is spread thinly over many pages, among
//     the garbage of the handshakes around it; pages with one live object
//     stay in use. Collecting more often while the burst lasts packs them
//     tighter: with a thousand devices (make bench), at a target of 50
//     rather than 200, 4 to 5 MiB less once they sit idle; at 25 rather
//     than 50, 1.5 MiB less again, and a peak 3 MiB lower, for the
//     collector's share of the burst's CPU going from about 7% to 12%
//     (at 10: 0.5 MiB less again, for 17%).
//   - the runtime hands free pages back to the kernel slowly, and only
//     down to its next heap goal: an idle gateway would keep the burst's
//     peak for minutes.
//
// So while connections arrive at burst rate the collector's target is
// lowered to burstGCPercent, and once a burst is over the target is
// restored and the free pages returned at once (debug.FreeOSMemory).

const (
	// burstConnections is how many connections since the last release
	// make a burst worth releasing after.
	burstConnections = 64
	// burstQuiet is how long no connection may arrive before the burst
	// counts as over: how often the count is read.
	burstQuiet = 500 * time.Millisecond
	// burstRate is how many connections within one burstQuiet make the
	// collector's target drop to burstGCPercent until the burst is over.
	burstRate = 16
	// burstGCPercent is the collector's target during a burst.
	burstGCPercent = 25
)

// burstMemory watches the connections and acts on bursts of them.
type burstMemory struct {
	// quiet is burstQuiet.
	quiet time.Duration
	// connections counts the connections since start.
	connections func() int64
	// release returns free memory: debug.FreeOSMemory.
	release func()
	// setGCPercent sets the collector's target and returns the one it
	// replaced: debug.SetGCPercent.
	setGCPercent func(int) int
}

// watchBursts is burstMemory with the runtime's functions and counts.
func watchBursts(connections func() int64) burstMemory {
	return burstMemory{quiet: burstQuiet, connections: connections,
		release: debug.FreeOSMemory, setGCPercent: debug.SetGCPercent}
}

// run reads the count every quiet until ctx ends. When burstRate or more
// connections arrived in one period, it lowers the collector's target to
// burstGCPercent (unless it was lower already, or off). After a period
// with no connection it restores the target and, if at least
// burstConnections arrived since the last release, releases.
func (m burstMemory) run(ctx context.Context) {
	tick := time.NewTicker(m.quiet)
	defer tick.Stop()
	last := m.connections()
	pending := int64(0)
	restore, lowered := 0, false
	defer func() {
		if lowered {
			m.setGCPercent(restore)
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := m.connections()
		if delta := n - last; delta > 0 {
			pending += delta
			last = n
			if delta >= burstRate && !lowered {
				restore = m.setGCPercent(burstGCPercent)
				lowered = true
				if restore <= burstGCPercent { // lower already, or off
					m.setGCPercent(restore)
					lowered = false
				}
			}
			continue
		}
		if lowered {
			m.setGCPercent(restore)
			lowered = false
		}
		if pending >= burstConnections {
			m.release()
			pending = 0
		}
	}
}
