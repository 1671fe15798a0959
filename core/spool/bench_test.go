package spool

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const benchTopic = "dt/factory/line1/sensor/42"

// runWriters calls fn b.N times from writers goroutines and reports msgs/s.
func runWriters(b *testing.B, writers int, fn func() error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	w0, wok := wchar()
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := fn(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	if w1, ok := wchar(); ok && wok {
		b.ReportMetric(float64(w1-w0)/float64(b.N), "written-B/msg")
	}
}

// wchar is the number of bytes this process has passed to write(2)-like
// calls (pwrite included), from /proc/self/io.
func wchar() (int64, bool) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// BenchmarkAppend: durable Appends of 256-byte payloads into a default
// (2.5 MB, so full: oldest dropped) spool, by 1 and 16 writers, with and
// without fdatasync.
func BenchmarkAppend(b *testing.B) {
	payload := make([]byte, 256)
	for _, writers := range []int{1, 16} {
		for _, sync := range []bool{true, false} {
			name := fmt.Sprintf("writers=%d/fsync", writers)
			if !sync {
				name = fmt.Sprintf("writers=%d/nosync", writers)
			}
			b.Run(name, func(b *testing.B) {
				s := open(b, Options{noSync: !sync})
				runWriters(b, writers, func() error { return s.Append(context.Background(), benchTopic, payload) })
				s.mu.Lock()
				b.ReportMetric(float64(s.stats.Appended)/float64(s.commits), "msgs/commit")
				s.mu.Unlock()
			})
		}
	}
}

// BenchmarkAppendBolt is the reference for choosing the log: the same
// Appends as bbolt puts (seq → topic+payload), one transaction per message
// for one writer, db.Batch (bbolt's group commit) for 16, with
// MaxBatchDelay lowered from 10 ms to 1 ms (the best of 0, 0.2, 1 and 10 ms
// here). No size bound, drops or acks, so it flatters bbolt.
func BenchmarkAppendBolt(b *testing.B) {
	payload := make([]byte, 256)
	bucket := []byte("m")
	for _, writers := range []int{1, 16} {
		for _, sync := range []bool{true, false} {
			name := fmt.Sprintf("writers=%d/fsync", writers)
			if !sync {
				name = fmt.Sprintf("writers=%d/nosync", writers)
			}
			b.Run(name, func(b *testing.B) {
				db, err := bolt.Open(filepath.Join(b.TempDir(), "bolt.db"), 0o600, &bolt.Options{NoSync: !sync})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				db.MaxBatchDelay = time.Millisecond
				db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucket); return err })
				var seq atomic.Uint64
				put := func(tx *bolt.Tx) error {
					v := append([]byte(benchTopic), payload...)
					return tx.Bucket(bucket).Put(binary.BigEndian.AppendUint64(nil, seq.Add(1)), v)
				}
				runWriters(b, writers, func() error {
					if writers == 1 {
						return db.Update(put)
					}
					return db.Batch(put)
				})
			})
		}
	}
}

// BenchmarkDrain: 10,000 spooled messages read with Peek(100) and acked
// one by one until the spool is empty (acks written as in production).
func BenchmarkDrain(b *testing.B) {
	const n = 10000
	payload := make([]byte, 256)
	path := filepath.Join(b.TempDir(), "cloud.db")
	var total time.Duration
	for range b.N {
		fill := open(b, Options{Path: path, MaxBytes: 8 << 20, noSync: true})
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range n / 16 {
					fill.Append(context.Background(), benchTopic, payload)
				}
			})
		}
		wg.Wait()
		fill.Close()
		s := open(b, Options{Path: path, MaxBytes: 8 << 20})
		if st := s.Stats(); st.Messages != n/16*16 {
			b.Fatalf("%d messages", st.Messages)
		}
		start := time.Now()
		for {
			ms, err := s.Peek(100)
			if err != nil {
				b.Fatal(err)
			}
			if len(ms) == 0 {
				break
			}
			for _, m := range ms {
				s.Ack(m.Seq)
			}
		}
		total += time.Since(start)
		s.Close()
	}
	b.ReportMetric(float64(n/16*16*b.N)/total.Seconds(), "msgs/s")
}

// BenchmarkHeapFullSpool: heap in use by a full default-size spool of
// 256-byte messages (the index only: payloads stay on disk).
func BenchmarkHeapFullSpool(b *testing.B) {
	payload := make([]byte, 256)
	var heap, msgs float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		s := open(b, Options{noSync: true})
		for s.Stats().Dropped == 0 {
			s.Append(context.Background(), benchTopic, payload)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap = float64(after.HeapInuse) - float64(before.HeapInuse)
		msgs = float64(s.Stats().Messages)
		runtime.KeepAlive(s)
		s.Close()
	}
	b.ReportMetric(heap/(1<<20), "MiB-heap")
	b.ReportMetric(msgs, "msgs")
}
