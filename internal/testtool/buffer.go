package testtool

import (
	"bytes"
	"strings"
	"sync"
	"time"
)

// Buffer collects a process's or a logger's output; it is safe for
// writers and a concurrent reader.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Len returns how many bytes were written so far: an offset for WaitFor
// that skips what came before.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// WaitFor waits until substr appears at or after byte offset from; it
// reports whether it did before timeout passed or stop was closed (the
// writer exited: one last look is taken then, as the text may have come
// with the exit). stop may be nil.
func (b *Buffer) WaitFor(substr string, from int, timeout time.Duration, stop <-chan struct{}) bool {
	found := func() bool {
		s := b.String()
		return from <= len(s) && strings.Contains(s[from:], substr)
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if found() {
			return true
		}
		select {
		case <-stop:
			return found()
		case <-deadline.C:
			return found()
		case <-time.After(pollInterval):
		}
	}
}
