package main

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ggcore/ggcore/internal/testtool"
)

// fakeRuntime stands for the runtime's collector in burstMemory.
type fakeRuntime struct {
	conns, reads, releases atomic.Int64
	percent                atomic.Int64 // the collector's target now
	lowest                 atomic.Int64 // the lowest target set
}

// start runs m on f until the test ends, once it read the count at
// start.
func (f *fakeRuntime) start(t *testing.T, percent int) {
	t.Helper()
	f.percent.Store(int64(percent))
	f.lowest.Store(int64(percent))
	m := burstMemory{quiet: time.Millisecond,
		connections: func() int64 { f.reads.Add(1); return f.conns.Load() },
		release:     func() { f.releases.Add(1) },
		setGCPercent: func(p int) int {
			if int64(p) < f.lowest.Load() {
				f.lowest.Store(int64(p))
			}
			return int(f.percent.Swap(int64(p)))
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	f.periods(t, 1)
}

// periods waits until the count was read n more times: n periods.
func (f *fakeRuntime) periods(t *testing.T, n int64) {
	t.Helper()
	target := f.reads.Load() + n
	testtool.Eventually(t, "the count read again", func() bool { return f.reads.Load() >= target })
}

// Memory is released once after a burst of connections is over, not
// after a few stragglers, and again once stragglers add up to a burst;
// during a burst the collector's target is lowered, and restored after.
func TestBurstMemory(t *testing.T) {
	var f fakeRuntime
	f.start(t, 200)
	steps := []struct {
		name         string
		arrive       int64
		wantReleases int64
		wantLowest   int64
	}{
		{"a burst", burstConnections + 36, 1, burstGCPercent},
		{"a few stragglers", 10, 1, 200},
		{"stragglers making a burst", burstRate - 1, 1, 200},
		{"the rest of a burst", burstConnections - 10 - (burstRate - 1), 2, burstGCPercent},
		{"nothing", 0, 2, 200},
	}
	for _, s := range steps {
		f.lowest.Store(f.percent.Load())
		f.conns.Add(s.arrive)
		f.periods(t, 3)
		if got := f.releases.Load(); got != s.wantReleases {
			t.Errorf("after %s: %d releases, want %d", s.name, got, s.wantReleases)
		}
		if got := f.lowest.Load(); got != s.wantLowest {
			t.Errorf("during %s: the collector's target went down to %d, want %d", s.name, got, s.wantLowest)
		}
		if got := f.percent.Load(); got != 200 {
			t.Errorf("after %s: the collector's target is %d, want 200 restored", s.name, got)
		}
	}
}

// A target already below burstGCPercent, or off, is left as it was.
func TestBurstMemoryKeepsALowerTarget(t *testing.T) {
	for _, percent := range []int{-1, 20} {
		var f fakeRuntime
		f.start(t, percent)
		f.conns.Add(burstConnections)
		f.periods(t, 3)
		if got := f.percent.Load(); got != int64(percent) {
			t.Errorf("target %d: %d after a burst", percent, got)
		}
		if got := f.releases.Load(); got != 1 {
			t.Errorf("target %d: %d releases after a burst, want 1", percent, got)
		}
	}
}
