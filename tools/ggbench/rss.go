package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// memory is a process's resident memory, in bytes.
type memory struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: highest resident so far
	// Anon and File split RSS: RssAnon is the process's own memory (heap,
	// stacks), RssFile the pages of its executable and libraries it has
	// mapped, clean page cache the kernel can share and reclaim. Zero
	// when the kernel does not report them.
	Anon, File int64
}

// readMemory reads VmRSS, VmHWM, RssAnon and RssFile from
// /proc/<pid>/status.
func readMemory(pid int) (memory, error) {
	path := fmt.Sprintf("/proc/%d/status", pid)
	f, err := os.Open(path)
	if err != nil {
		return memory{}, fmt.Errorf("read memory: %w", err)
	}
	defer f.Close()
	m, err := parseStatus(f)
	if err != nil {
		return memory{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// parseStatus reads the VmRSS and VmHWM lines ("VmRSS:   1234 kB") of a
// /proc/<pid>/status file, and the RssAnon and RssFile lines if present.
func parseStatus(r io.Reader) (memory, error) {
	var m memory
	var haveRSS, havePeak bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		var field *int64
		switch key {
		case "VmRSS":
			field, haveRSS = &m.RSS, true
		case "VmHWM":
			field, havePeak = &m.Peak, true
		case "RssAnon":
			field = &m.Anon
		case "RssFile":
			field = &m.File
		}
		if !ok || field == nil {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("%s: %q is not \"<n> kB\"", key, strings.TrimSpace(val))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return m, fmt.Errorf("%s: %q is not a size in kB", key, f[0])
		}
		*field = kb << 10
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if !haveRSS || !havePeak {
		return m, fmt.Errorf("no VmRSS/VmHWM lines (is it a process status file?)")
	}
	return m, nil
}

// memoryRow is one line of the memory table.
type memoryRow struct {
	Broker, State string
	Mem           memory
}

// settle is how long a broker is left alone before its memory is read.
const settle = 2 * time.Second

// measureMemory reads the broker's memory idle, then connects every device
// of the fleet (concurrency-limited, mutual TLS, no subscriptions), waits
// for the broker to settle, reads it again, and disconnects them.
func measureMemory(ctx context.Context, p *process, name string, d dialer, devices []string, concurrency int, say func(string, ...any)) ([]memoryRow, error) {
	if err := sleep(ctx, settle); err != nil {
		return nil, err
	}
	idle, err := readMemory(p.PID())
	if err != nil {
		return nil, err
	}
	rows := []memoryRow{{name, "idle, 0 connected", idle}}

	start := time.Now()
	clients, err := connectMany(ctx, d, devices, concurrency, func(n int) {
		say("%s: %d/%d devices connected", name, n, len(devices))
	})
	defer func() {
		say("%s: disconnecting %d devices", name, len(clients))
		closeMany(clients, concurrency)
	}()
	if err != nil {
		return rows, err
	}
	say("%s: %d devices connected in %s", name, len(clients), time.Since(start).Round(time.Millisecond))
	if err := sleep(ctx, settle); err != nil {
		return rows, err
	}
	if p.exited() {
		return rows, p.exitError()
	}
	loaded, err := readMemory(p.PID())
	if err != nil {
		return rows, err
	}
	return append(rows, memoryRow{name, fmt.Sprintf("%d connected", len(clients)), loaded}), nil
}

// connectMany connects devices with at most concurrency handshakes at a
// time, calling progress every 250 connections. On the first failure it
// stops and returns what it connected so far with the error.
func connectMany(ctx context.Context, d dialer, devices []string, concurrency int, progress func(int)) ([]*mqttClient, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu      sync.Mutex
		clients []*mqttClient
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	for range max(1, concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(len(devices)) {
					return
				}
				// A small receive window: these clients only sit there.
				c, err := d.connect(ctx, devices[i], clientOptions{ReceiveMaximum: 16})
				if err != nil {
					cancel(err)
					return
				}
				mu.Lock()
				clients = append(clients, c)
				n := len(clients)
				mu.Unlock()
				if n%250 == 0 {
					progress(n)
				}
			}
		}()
	}
	wg.Wait()
	return clients, context.Cause(ctx)
}

// closeMany disconnects clients, concurrency at a time.
func closeMany(clients []*mqttClient, concurrency int) {
	work := make(chan *mqttClient)
	var wg sync.WaitGroup
	for range max(1, concurrency) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				c.close()
			}
		}()
	}
	for _, c := range clients {
		work <- c
	}
	close(work)
	wg.Wait()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
