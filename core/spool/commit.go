package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// run is the committer: the only goroutine that writes the file after Open.
func (s *Spool) run() {
	defer close(s.stopped)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.kickC:
		case <-timer.C:
		}
		for {
			worked, stop := s.step()
			if stop {
				s.finish()
				return
			}
			if !worked {
				break
			}
			s.maybeCompact()
		}
		s.logDrops(false)
		if d, ok := s.nextDeadline(); ok {
			timer.Reset(d)
		}
	}
}

// step commits one frame: the oldest pending batch with the drops it
// causes, and the pending acks if they are due. It reports whether there
// was anything to do, and whether the committer should stop.
func (s *Spool) step() (worked, stop bool) {
	s.mu.Lock()
	var b *batch
	if len(s.queue) > 0 {
		b = s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
	} else if s.open != nil {
		b, s.open = s.open, nil
	}
	flushAcks := len(s.acks) > 0 && (b != nil || s.closing || len(s.acks) >= ackFlushCount ||
		time.Since(s.ackSince) >= ackFlushDelay)
	if b == nil && !flushAcks {
		stop = s.closing
		s.mu.Unlock()
		return false, stop
	}
	if err := s.err; err != nil {
		s.acks = s.acks[:0]
		s.mu.Unlock()
		if b != nil {
			b.err = err
			close(b.done)
		}
		return true, false
	}
	// Make room: drop the oldest messages, then if the batch alone is
	// larger than the spool, its own oldest.
	var dropped []uint64
	if b != nil {
		over := s.idx.bytes + b.bytes - s.max
		for over > 0 {
			e, ok := s.idx.popOldest()
			if !ok {
				break
			}
			dropped = append(dropped, e.seq)
			over -= e.size()
		}
		for i := range b.ents {
			if over <= 0 {
				break
			}
			p := &b.ents[i]
			p.dropped = true
			dropped = append(dropped, p.seq)
			over -= int64(p.tlen) + int64(p.plen) + Overhead
		}
	}
	var acks []uint64
	if flushAcks {
		acks, s.acks = s.acks, s.ackSpare[:0]
	}
	off := s.size
	s.mu.Unlock()

	var buf []byte
	if b != nil {
		buf = b.buf
	} else {
		buf = beginFrame(nil)
	}
	buf = appendSeqs(buf, recDrop, dropped)
	buf = appendSeqs(buf, recAck, acks)
	sealFrame(buf)
	err := s.write(buf, off)

	s.mu.Lock()
	if acks != nil {
		s.ackSpare = acks[:0]
	}
	if err == nil {
		s.size = off + int64(len(buf))
		s.commits++
		if b != nil {
			for _, p := range b.ents {
				if !p.dropped {
					s.idx.push(entry{seq: p.seq, off: off + int64(p.rel), hdr: p.hdr, tlen: p.tlen, plen: p.plen})
				}
			}
			s.stats.Appended += uint64(len(b.ents))
			if s.idx.live > 0 && s.notEmpty != nil {
				close(s.notEmpty)
				s.notEmpty = nil
			}
		}
		s.stats.Dropped += uint64(len(dropped))
		s.stats.DroppedTotal += uint64(len(dropped))
		s.dropLogN += uint64(len(dropped))
	}
	if cap(buf) <= 2*maxBatch {
		s.spareBuf = buf[:0]
	}
	s.mu.Unlock()
	if b != nil {
		b.err = err
		close(b.done)
	}
	return true, false
}

// write writes one frame at off and syncs it. A failed write is undone and
// only fails its batch; a failed sync makes the Spool refuse further
// Appends, since the kernel may have dropped the unsynced data.
func (s *Spool) write(frame []byte, off int64) error {
	if _, err := s.f.WriteAt(frame, off); err != nil {
		err = fmt.Errorf("spool: writing %s: %w", s.path, err)
		if terr := s.f.Truncate(off); terr != nil {
			s.fail(err)
		}
		return err
	}
	if s.noSync {
		return nil
	}
	if err := datasync(s.f); err != nil {
		err = fmt.Errorf("spool: syncing %s (reopen the spool to recover): %w", s.path, err)
		s.fail(err)
		return err
	}
	return nil
}

func (s *Spool) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
		s.log.Error("spool write failed; no more messages are accepted until it is reopened", "error", err)
	}
	s.mu.Unlock()
}

// finish ends the committer after Close.
func (s *Spool) finish() {
	s.logDrops(true)
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if cerr := s.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: %w", cerr)
	}
	s.lockf.Close()
	s.closeErr = err
}

// logDrops reports dropped messages, at most once per dropLogEvery unless now.
func (s *Spool) logDrops(now bool) {
	if s.dropLogN == 0 || (!now && time.Since(s.dropLogAt) < dropLogEvery) {
		return
	}
	st := s.Stats()
	s.log.Warn("spool full: dropped the oldest messages", "dropped", s.dropLogN,
		"dropped_total", st.DroppedTotal, "messages", st.Messages, "bytes", st.Bytes, "max_bytes", s.max)
	s.dropLogN = 0
	s.dropLogAt = time.Now()
}

// nextDeadline is when the committer must wake up without a kick.
func (s *Spool) nextDeadline() (time.Duration, bool) {
	var at time.Time
	if s.dropLogN > 0 {
		at = s.dropLogAt.Add(dropLogEvery)
	}
	s.mu.Lock()
	if len(s.acks) > 0 {
		if t := s.ackSince.Add(ackFlushDelay); at.IsZero() || t.Before(at) {
			at = t
		}
	}
	s.mu.Unlock()
	if at.IsZero() {
		return 0, false
	}
	return max(time.Until(at), time.Millisecond), true
}

// maybeCompact compacts the file once the bytes of removed messages reach
// the size limit: the file stays below about twice the limit, and each
// byte is copied at most about once more.
func (s *Spool) maybeCompact() {
	s.mu.Lock()
	garbage := s.size - headerSize - s.idx.disk
	due := garbage >= s.compactAt && s.size > s.compactRetry && s.err == nil
	s.mu.Unlock()
	if !due {
		return
	}
	if err := s.compact(); err != nil {
		s.log.Warn("spool compaction failed; will try again later", "error", err)
		s.compactRetry = s.size + s.compactAt
		return
	}
	s.compactRetry = 0
}

// compact rewrites the file with only the live messages. Appends, Acks and
// Peeks proceed meanwhile (Appends are committed after it).
func (s *Spool) compact() error {
	s.mu.Lock()
	snap := make([]entry, 0, s.idx.live)
	s.idx.each(func(e *entry) bool { snap = append(snap, *e); return true })
	nextSeq, droppedTotal := s.nextSeq, s.stats.DroppedTotal
	old := s.f
	s.mu.Unlock()

	nf, size, offs, err := writeFile(s.path, old, snap, nextSeq, droppedTotal, s.noSync)
	if err != nil {
		return err
	}
	s.mu.Lock()
	j := 0
	s.idx.each(func(e *entry) bool {
		for j < len(snap) && snap[j].seq < e.seq {
			j++
		}
		if j == len(snap) || snap[j].seq != e.seq {
			panic("spool: compaction lost a message") // every live entry was in the snapshot
		}
		e.off = offs[j]
		return true
	})
	s.f, s.size = nf, size
	s.mu.Unlock()
	old.Close()
	// path now names the new file and Appends go there; until the rename
	// is durable a power cut could bring back the old file without them.
	if err := s.syncDir(); err != nil {
		s.fail(fmt.Errorf("spool: syncing the directory of %s (reopen the spool to recover): %w", s.path, err))
	}
	return nil
}

func (s *Spool) syncDir() error {
	if s.noSync {
		return nil
	}
	return syncDir(filepath.Dir(s.path))
}

// writeFile writes a complete spool file holding the counters and the
// records of ents, read from old, to path+".tmp", syncs it and renames it
// to path. It returns the new file, open, its size and the new offsets of
// ents. The caller must sync the directory (syncDir) before writing to it.
func writeFile(path string, old *os.File, ents []entry, nextSeq, droppedTotal uint64, noSync bool) (_ *os.File, size int64, offs []int64, err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spool: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	const frameMax = 1 << 20
	offs = make([]int64, len(ents))
	buf := append(fileHeader(), make([]byte, frameHeaderSize)...)
	frame := headerSize // start of the current frame in buf
	buf = appendMeta(buf, nextSeq, droppedTotal)
	// Runs of records contiguous in old are read with one ReadAt.
	var runSrc int64
	runDst, runLen := 0, 0
	flushRun := func() error {
		if runLen == 0 {
			return nil
		}
		_, err := old.ReadAt(buf[runDst:runDst+runLen], runSrc)
		runLen = 0
		if err != nil {
			return fmt.Errorf("spool: reading %s: %w", path, err)
		}
		return nil
	}
	flushFrame := func() error {
		if err := flushRun(); err != nil {
			return err
		}
		sealFrame(buf[frame:])
		if _, err := f.Write(buf); err != nil {
			return fmt.Errorf("spool: writing %s: %w", tmp, err)
		}
		size += int64(len(buf))
		buf = beginFrame(buf[:0])
		frame = 0
		return nil
	}
	for i := range ents {
		e := &ents[i]
		n := int(e.recLen())
		if len(buf)-frame > frameHeaderSize && len(buf)-frame+n > frameMax {
			if err := flushFrame(); err != nil {
				return nil, 0, nil, err
			}
		}
		if runLen > 0 && runSrc+int64(runLen) != e.off {
			if err := flushRun(); err != nil {
				return nil, 0, nil, err
			}
		}
		if runLen == 0 {
			runSrc, runDst = e.off, len(buf)
		}
		offs[i] = size + int64(len(buf))
		buf = append(buf, make([]byte, n)...)
		runLen += n
	}
	if err := flushFrame(); err != nil {
		return nil, 0, nil, err
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			return nil, 0, nil, fmt.Errorf("spool: syncing %s: %w", tmp, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return nil, 0, nil, fmt.Errorf("spool: %w", err)
	}
	return f, size, offs, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// load opens or creates the file and rebuilds the index.
func (s *Spool) load() error {
	os.Remove(s.path + ".tmp") // an interrupted compaction
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return s.create()
	}
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.f = f
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	end := st.Size()
	if end == 0 { // created by someone else, never written
		f.Close()
		s.f = nil
		return s.create()
	}
	hdr := make([]byte, headerSize)
	if end < headerSize {
		return s.corrupt(0, "too short for a spool file")
	}
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return fmt.Errorf("spool: reading %s: %w", s.path, err)
	}
	if what := checkHeader(hdr); what != "" {
		return s.corrupt(0, what)
	}

	pos := int64(headerSize)
	r := bufio.NewReaderSize(io.NewSectionReader(f, pos, end-pos), 256<<10)
	var fh [frameHeaderSize]byte
	var body []byte
	var last uint64 // last message seq
	torn := int64(-1)
	scanFrom := int64(0) // where to look for valid frames after a bad one
	for pos < end {
		if end-pos < frameHeaderSize {
			torn, scanFrom = pos, end
			break
		}
		if _, err := io.ReadFull(r, fh[:]); err != nil {
			return fmt.Errorf("spool: reading %s: %w", s.path, err)
		}
		n, crc, ok := parseFrameHeader(fh[:])
		if !ok {
			torn, scanFrom = pos, pos+1
			break
		}
		if int64(n) > end-pos-frameHeaderSize { // intact header, body cut short
			torn, scanFrom = pos, end
			break
		}
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return fmt.Errorf("spool: reading %s: %w", s.path, err)
		}
		if checksum(body) != crc {
			torn, scanFrom = pos, pos+frameHeaderSize+int64(n)
			break
		}
		base := pos + frameHeaderSize
		err := decodeBody(body, func(rec *record) error {
			switch rec.typ {
			case recAppend:
				if rec.seq <= last {
					return errors.New("message sequence numbers out of order")
				}
				last = rec.seq
				s.idx.push(entry{seq: rec.seq, off: base + int64(rec.off), hdr: uint8(rec.hdr),
					tlen: uint32(len(rec.topic)), plen: uint32(len(rec.payload))})
			case recAck:
				for _, seq := range rec.seqs {
					s.idx.remove(seq)
				}
			case recDrop:
				for _, seq := range rec.seqs {
					if _, ok := s.idx.remove(seq); ok {
						s.stats.DroppedTotal++
					}
				}
			case recMeta:
				s.nextSeq = max(s.nextSeq, rec.nextSeq)
				s.stats.DroppedTotal = rec.dropped
			}
			return nil
		})
		if err != nil {
			return s.corrupt(pos, "bad frame contents: "+err.Error())
		}
		pos += frameHeaderSize + int64(n)
	}
	s.nextSeq = max(s.nextSeq, last+1)

	if torn >= 0 {
		if at, ok, err := findFrame(f, scanFrom, end); err != nil {
			return fmt.Errorf("spool: reading %s: %w", s.path, err)
		} else if ok {
			return s.corrupt(torn, fmt.Sprintf("damaged frame followed by valid data at offset %d", at))
		}
		s.log.Warn("spool file: cut off the torn end of an interrupted write",
			"offset", torn, "bytes", end-torn)
		if err := f.Truncate(torn); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		if err := datasync(f); err != nil {
			return fmt.Errorf("spool: syncing %s: %w", s.path, err)
		}
		end = torn
	}
	s.size = end

	// The limit may have been lowered since the last run.
	if s.idx.bytes > s.max {
		var dropped []uint64
		for s.idx.bytes > s.max {
			e, _ := s.idx.popOldest()
			dropped = append(dropped, e.seq)
		}
		frame := appendSeqs(beginFrame(nil), recDrop, dropped)
		sealFrame(frame)
		if err := s.write(frame, s.size); err != nil {
			return err
		}
		s.size += int64(len(frame))
		s.stats.Dropped += uint64(len(dropped))
		s.stats.DroppedTotal += uint64(len(dropped))
		s.log.Warn("spool over its size limit: dropped the oldest messages",
			"dropped", len(dropped), "max_bytes", s.max)
	}
	if s.idx.live > 0 || torn >= 0 {
		s.log.Info("spool recovered", "messages", s.idx.live, "bytes", s.idx.bytes, "next_seq", s.nextSeq)
	}
	s.maybeCompact()
	return nil
}

// create makes a new, empty spool file.
func (s *Spool) create() error {
	f, size, _, err := writeFile(s.path, nil, nil, s.nextSeq, 0, s.noSync)
	if err != nil {
		return err
	}
	s.f, s.size = f, size
	if err := s.syncDir(); err != nil {
		return fmt.Errorf("spool: syncing the directory of %s: %w", s.path, err)
	}
	return nil
}

// findFrame looks for a valid frame anywhere in f[from:end].
func findFrame(f *os.File, from, end int64) (int64, bool, error) {
	const window = 1 << 20
	buf := make([]byte, window+frameHeaderSize)
	var body []byte
	for base := from; base+frameHeaderSize <= end; base += window {
		n := min(int64(len(buf)), end-base)
		w := buf[:n]
		if _, err := f.ReadAt(w, base); err != nil {
			return 0, false, err
		}
		for i := 0; i+frameHeaderSize <= len(w) && i < window; i++ {
			ln, crc, ok := parseFrameHeader(w[i:])
			at := base + int64(i)
			if !ok || int64(ln) > end-at-frameHeaderSize {
				continue
			}
			if cap(body) < int(ln) {
				body = make([]byte, ln)
			}
			body = body[:ln]
			if _, err := f.ReadAt(body, at+frameHeaderSize); err != nil {
				return 0, false, err
			}
			if checksum(body) == crc {
				return at, true, nil
			}
		}
	}
	return 0, false, nil
}
