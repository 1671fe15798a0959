// Package boltcheck checks the structure of a bbolt file with plain reads,
// before bbolt maps it into memory.
//
// bbolt reads its file through a memory mapping that is larger than the
// file, and follows the page numbers and offsets it finds there without
// checking them. In a truncated or scribbled file, one of them can point
// past the end of the file, where a read raises SIGBUS, or outside the
// mapping, where it raises SIGSEGV; either kills the process (they are not
// Go panics), and bbolt's own Tx.Check reads the pages in a goroutine of
// its own, so runtime/debug.SetPanicOnFault in the caller does not cover
// it. A page reference cycle sends bbolt's recursive walks into a stack
// overflow, which kills the process too.
//
// File reads what bbolt would follow when it opens the file and walks it:
// the meta pages, the freelist page and every branch, leaf and bucket
// page reachable from the root bucket, and refuses the file when a page
// number, page extent or element offset falls outside the file, a page is
// not of the type its reference needs, or a page is reachable twice.
// What it leaves to bbolt's Tx.Check, which is then safe to run, is what
// needs no memory access to go wrong: key order, freed pages still in
// use, pages neither reachable nor free.
//
// It knows bbolt's file format version 2 (bbolt 1.3 and later), with the
// byte order of the machine, as bbolt writes it.
package boltcheck

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"
)

// ErrLocked is File's error when another process holds the file's lock
// (bbolt's flock) past the timeout.
var ErrLocked = errors.New("boltcheck: the file is locked by another process")

// The format: a page starts with a 16-byte header (id uint64, flags
// uint16, count uint16, overflow uint32); branch and leaf elements are 16
// bytes each and locate their key (and value) relative to the element's
// own address; a meta page holds the meta after its header.
const (
	pageHeaderSize = 16
	elementSize    = 16
	metaSize       = 64
	metaSumSize    = 56 // the checksum covers the meta up to itself
	bucketHeader   = 16 // a bucket value: root page id, sequence

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagFreelist = 0x10

	leafBucket = 0x01 // a leaf element whose value is a bucket

	magic      = 0xED0CDAED
	version    = 2
	noFreelist = ^uint64(0)

	minPageSize = 1 << 10
	maxPageSize = 1 << 20

	// extendedCount is a freelist page's count when the real count is
	// in the first id slot.
	extendedCount = 0xFFFF
)

var ne = binary.NativeEndian

// File checks the bbolt file at path while it holds the file's lock,
// waiting up to timeout for it (ErrLocked past that). A missing or empty
// file passes: bbolt creates and initialises it. The lock is released on
// return, for bbolt.Open to take.
func File(path string, timeout time.Duration) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("boltcheck: %w", err)
	}
	defer f.Close()
	if err := lock(f, timeout); err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("boltcheck: %w", err)
	}
	return Check(f, fi.Size())
}

// lock takes an exclusive flock on f, as bbolt does (closing f releases
// it), so that a store that another process is writing is not read
// half-written.
func lock(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, syscall.EWOULDBLOCK):
			return fmt.Errorf("boltcheck: lock %s: %w", f.Name(), err)
		case time.Now().After(deadline):
			return ErrLocked
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// meta is a meta page's content.
type meta struct {
	magic, version, pageSize uint32
	root, freelist, pgid     uint64
	txid, checksum, sum      uint64
}

func parseMeta(b []byte) meta {
	h := fnv.New64a()
	h.Write(b[:metaSumSize])
	return meta{
		magic: ne.Uint32(b[0:]), version: ne.Uint32(b[4:]), pageSize: ne.Uint32(b[8:]),
		root: ne.Uint64(b[16:]), freelist: ne.Uint64(b[32:]), pgid: ne.Uint64(b[40:]),
		txid: ne.Uint64(b[48:]), checksum: ne.Uint64(b[56:]), sum: h.Sum64(),
	}
}

// validate is bbolt's own test of a meta page.
func (m meta) validate() error {
	switch {
	case m.magic != magic:
		return errors.New("not a bbolt meta page")
	case m.version != version:
		return fmt.Errorf("format version %d, want %d", m.version, version)
	case m.checksum != m.sum:
		return errors.New("checksum mismatch")
	}
	return nil
}

// readMeta reads the meta of the page at off.
func readMeta(r io.ReaderAt, off int64) (meta, error) {
	b := make([]byte, metaSize)
	if _, err := r.ReadAt(b, off+pageHeaderSize); err != nil {
		return meta{}, fmt.Errorf("read: %w", err)
	}
	m := parseMeta(b)
	return m, m.validate()
}

// Check checks the bbolt file that r reads, of size bytes (see File). An
// empty file passes.
func Check(r io.ReaderAt, size int64) error {
	if size == 0 {
		return nil
	}
	if err := check(r, size); err != nil {
		return fmt.Errorf("boltcheck: %w", err)
	}
	return nil
}

func check(r io.ReaderAt, size int64) error {
	// The page size, found as bbolt finds it: in the first meta page, or
	// else in the second one at the system's page size.
	m0, err0 := readMeta(r, 0)
	ps := int64(m0.pageSize)
	if err0 != nil {
		m1, err1 := readMeta(r, int64(os.Getpagesize()))
		if err1 != nil {
			return fmt.Errorf("neither meta page is valid (page 0: %v; page 1: %v)", err0, err1)
		}
		ps = int64(m1.pageSize)
	}
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return fmt.Errorf("page size %d is not a power of two from %d to %d", ps, minPageSize, maxPageSize)
	}
	if size%ps != 0 {
		return fmt.Errorf("truncated: %d bytes is not a whole number of %d-byte pages", size, ps)
	}
	if size < 4*ps {
		return fmt.Errorf("truncated: %d bytes, shorter than a new file's 4 pages of %d bytes", size, ps)
	}
	// The meta bbolt uses: the valid one with the higher transaction ID.
	m0, err0 = readMeta(r, 0)
	m1, err1 := readMeta(r, ps)
	a, b, errA, errB := m0, m1, err0, err1
	if m1.txid > m0.txid {
		a, b, errA, errB = m1, m0, err1, err0
	}
	m := a
	if errA != nil {
		if errB != nil {
			return fmt.Errorf("neither meta page is valid (page 0: %v; page 1: %v)", err0, err1)
		}
		m = b
	}
	if int64(m.pageSize) != ps {
		return fmt.Errorf("the meta page says pages are %d bytes, the other %d", m.pageSize, ps)
	}
	pages := uint64(size / ps)
	if m.pgid < 2 {
		return fmt.Errorf("the meta page's high-water mark %d is below the meta pages", m.pgid)
	}
	if m.pgid > pages {
		return fmt.Errorf("truncated: %d bytes, its high-water mark (page %d) needs %d", size, m.pgid, m.pgid*uint64(ps))
	}
	w := &walker{r: r, ps: ps, hwm: m.pgid, seen: map[uint64]bool{}}
	if m.freelist != noFreelist {
		if err := w.freelist(m.freelist); err != nil {
			return err
		}
	}
	return w.tree(m.root, "the root bucket")
}

// walker reads pages below the high-water mark hwm, each at most once.
type walker struct {
	r    io.ReaderAt
	ps   int64
	hwm  uint64
	seen map[uint64]bool
}

// page reads page id and its overflow pages; its type must be one of
// want (bbolt compares types whole, not bit by bit).
func (w *walker) page(id uint64, what string, want ...uint16) ([]byte, error) {
	if id < 2 || id >= w.hwm {
		return nil, fmt.Errorf("%s: page %d is outside pages 2 to %d", what, id, w.hwm-1)
	}
	if w.seen[id] {
		return nil, fmt.Errorf("%s: page %d is referenced twice", what, id)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := w.r.ReadAt(hdr, int64(id)*w.ps); err != nil {
		return nil, fmt.Errorf("%s: page %d: %w", what, id, err)
	}
	got, flags, overflow := ne.Uint64(hdr), ne.Uint16(hdr[8:]), uint64(ne.Uint32(hdr[12:]))
	if got != id {
		return nil, fmt.Errorf("%s: page %d says it is page %d", what, id, got)
	}
	if !slices.Contains(want, flags) {
		return nil, fmt.Errorf("%s: page %d has type %#x, want one of %#x", what, id, flags, want)
	}
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("%s: page %d runs %d pages past the high-water mark %d", what, id, overflow, w.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, fmt.Errorf("%s: page %d overlaps page %d, referenced elsewhere", what, id, i)
		}
		w.seen[i] = true
	}
	p := make([]byte, (1+int64(overflow))*w.ps)
	if _, err := w.r.ReadAt(p, int64(id)*w.ps); err != nil {
		return nil, fmt.Errorf("%s: page %d: %w", what, id, err)
	}
	return p, nil
}

// freelist checks the freelist page: its ids are inside the page, and
// name pages below the high-water mark.
func (w *walker) freelist(id uint64) error {
	p, err := w.page(id, "the freelist", flagFreelist)
	if err != nil {
		return err
	}
	ids, n := p[pageHeaderSize:], uint64(ne.Uint16(p[10:]))
	if n == extendedCount {
		if len(ids) < 8 {
			return fmt.Errorf("the freelist: page %d is too short for its count", id)
		}
		n, ids = ne.Uint64(ids), ids[8:]
	}
	if n > uint64(len(ids))/8 {
		return fmt.Errorf("the freelist: page %d holds %d ids, room for %d", id, n, len(ids)/8)
	}
	for i := range n {
		if f := ne.Uint64(ids[8*i:]); f < 2 || f >= w.hwm {
			return fmt.Errorf("the freelist: free page %d is outside pages 2 to %d", f, w.hwm-1)
		}
	}
	return nil
}

// tree checks the branch or leaf page id and what it reaches.
func (w *walker) tree(id uint64, what string) error {
	p, err := w.page(id, what, flagBranch, flagLeaf)
	if err != nil {
		return err
	}
	if ne.Uint16(p[8:]) == flagLeaf {
		return w.leaf(p, fmt.Sprintf("%s: leaf page %d", what, id))
	}
	where := fmt.Sprintf("%s: branch page %d", what, id)
	n := int(ne.Uint16(p[10:]))
	if n == 0 {
		return fmt.Errorf("%s has no elements", where)
	}
	if err := elements(p, n, where); err != nil {
		return err
	}
	for i := range n {
		e := p[pageHeaderSize+i*elementSize:]
		if err := within(p, pageHeaderSize+i*elementSize, ne.Uint32(e), uint64(ne.Uint32(e[4:])), where, i); err != nil {
			return err
		}
		if err := w.tree(ne.Uint64(e[8:]), what); err != nil {
			return err
		}
	}
	return nil
}

// leaf checks the leaf page p (from the file, or a bucket's inline page)
// and the buckets it holds.
func (w *walker) leaf(p []byte, where string) error {
	n := int(ne.Uint16(p[10:]))
	if err := elements(p, n, where); err != nil {
		return err
	}
	for i := range n {
		off := pageHeaderSize + i*elementSize
		e := p[off:]
		flags, pos, ksize, vsize := ne.Uint32(e), ne.Uint32(e[4:]), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		if err := within(p, off, pos, ksize+vsize, where, i); err != nil {
			return err
		}
		if flags&leafBucket == 0 {
			continue
		}
		start := uint64(off) + uint64(pos)
		key, v := p[start:start+ksize], p[start+ksize:start+ksize+vsize]
		bucket := fmt.Sprintf("bucket %q", key)
		if len(v) < bucketHeader {
			return fmt.Errorf("%s: %s: value of %d bytes, want at least %d", where, bucket, len(v), bucketHeader)
		}
		if root := ne.Uint64(v); root != 0 {
			if err := w.tree(root, bucket); err != nil {
				return err
			}
			continue
		}
		// An inline bucket: its leaf page follows the header.
		inline := v[bucketHeader:]
		if len(inline) < pageHeaderSize {
			return fmt.Errorf("%s: %s: inline page of %d bytes", where, bucket, len(inline))
		}
		if ne.Uint16(inline[8:]) != flagLeaf {
			return fmt.Errorf("%s: %s: inline page has type %#x, want a leaf", where, bucket, ne.Uint16(inline[8:]))
		}
		if err := w.leaf(inline, bucket+" (inline)"); err != nil {
			return err
		}
	}
	return nil
}

// elements checks that p has room for n elements.
func elements(p []byte, n int, where string) error {
	if pageHeaderSize+n*elementSize > len(p) {
		return fmt.Errorf("%s: %d elements do not fit its %d bytes", where, n, len(p))
	}
	return nil
}

// within checks that element i, at off in p, places its size bytes of
// key and value inside p (pos counts from the element).
func within(p []byte, off int, pos uint32, size uint64, where string, i int) error {
	if end := uint64(off) + uint64(pos) + size; end > uint64(len(p)) {
		return fmt.Errorf("%s: element %d points %d bytes past the page's end", where, i, end-uint64(len(p)))
	}
	return nil
}
