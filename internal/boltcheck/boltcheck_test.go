package boltcheck

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// store is a bbolt file as bbolt wrote it, and where its pages are.
type store struct {
	data []byte
	ps   uint64
	m    meta // the meta bbolt uses
	// Root pages: big is a branch page over leaf pages, large a leaf
	// page with overflow pages, outer a leaf page holding the inline
	// bucket inner.
	big, large, outer uint64
}

// newStore writes a bbolt file with branch, leaf, overflow and free pages,
// nested and inline buckets.
func newStore(t testing.TB) store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "good.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	put := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	put(func(tx *bolt.Tx) error {
		big, err := tx.CreateBucket([]byte("big"))
		if err != nil {
			return err
		}
		for i := range 2000 {
			if err := big.Put(fmt.Appendf(nil, "key-%05d", i), bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
				return err
			}
		}
		large, err := tx.CreateBucket([]byte("large"))
		if err != nil {
			return err
		}
		if err := large.Put([]byte("value"), bytes.Repeat([]byte("v"), 20<<10)); err != nil {
			return err
		}
		outer, err := tx.CreateBucket([]byte("outer"))
		if err != nil {
			return err
		}
		inner, err := outer.CreateBucket([]byte("inner"))
		if err != nil {
			return err
		}
		return inner.Put([]byte("k"), []byte("v"))
	})
	// Free pages: deletes, then two more writes release them.
	put(func(tx *bolt.Tx) error {
		big := tx.Bucket([]byte("big"))
		for i := 0; i < 2000; i += 2 {
			if err := big.Delete(fmt.Appendf(nil, "key-%05d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	for range 2 {
		put(func(tx *bolt.Tx) error { return tx.Bucket([]byte("outer")).Put([]byte("n"), []byte("x")) })
	}
	var s store
	if err := db.View(func(tx *bolt.Tx) error {
		s.big, s.large, s.outer = uint64(tx.Bucket([]byte("big")).Root()),
			uint64(tx.Bucket([]byte("large")).Root()), uint64(tx.Bucket([]byte("outer")).Root())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if s.data, err = os.ReadFile(path); err != nil {
		t.Fatal(err)
	}
	m0, m1 := parseMeta(s.data[pageHeaderSize:]), parseMeta(s.data[4096+pageHeaderSize:])
	s.m = m0
	if m1.txid > m0.txid {
		s.m = m1
	}
	s.ps = uint64(s.m.pageSize)
	if ne.Uint16(s.page(s.big)[8:]) != flagBranch || ne.Uint32(s.page(s.large)[12:]) == 0 ||
		ne.Uint16(s.page(s.m.freelist)[10:]) == 0 {
		t.Fatalf("the test store lacks a branch page, an overflow page or free pages")
	}
	return s
}

// page is page id of s.data, and what follows it.
func (s store) page(id uint64) []byte { return s.data[id*s.ps:] }

// element is element i of page p.
func element(p []byte, i int) []byte { return p[pageHeaderSize+i*elementSize:] }

// changed returns a copy of s whose data fn changed.
func (s store) changed(fn func(s store)) []byte {
	s.data = bytes.Clone(s.data)
	fn(s)
	return s.data
}

func xor(b []byte) {
	for i := range b {
		b[i] ^= 0x5a
	}
}

// TestCheck: Check passes what bbolt wrote and refuses, with what is
// wrong, each damage that would make bbolt read outside the file or loop.
func TestCheck(t *testing.T) {
	s := newStore(t)
	hwm, ps := s.m.pgid, s.ps
	tests := []struct {
		name string
		data []byte
		want string // "" when the file passes
	}{
		{"as bbolt wrote it", s.data, ""},
		{"empty: bbolt initialises it", nil, ""},
		{"the first meta scribbled: bbolt uses the second", s.changed(func(s store) {
			xor(s.data[pageHeaderSize : pageHeaderSize+metaSize])
		}), ""},
		{"the second meta scribbled: bbolt uses the first", s.changed(func(s store) {
			xor(s.page(1)[pageHeaderSize : pageHeaderSize+metaSize])
		}), ""},
		{"not a bbolt file", []byte(strings.Repeat("this is text, not a bbolt file\n", 500)), "neither meta page is valid"},
		{"zero-filled", make([]byte, len(s.data)), "neither meta page is valid"},
		{"shorter than a meta page", s.data[:40], "neither meta page is valid"},
		{"both meta pages scribbled", s.changed(func(s store) { xor(s.data[:2*ps]) }), "neither meta page is valid"},
		{"truncated inside a page", s.data[:len(s.data)-100], "not a whole number"},
		{"truncated to 3 pages", s.data[:3*ps], "shorter than a new file's 4 pages"},
		{"truncated below the high-water mark", s.data[:(hwm-1)*ps], "high-water mark"},
		{"truncated to half", s.data[:len(s.data)/2/int(ps)*int(ps)], "high-water mark"},
		{"zero-filled past the meta pages", s.changed(func(s store) { clear(s.data[2*ps:]) }), "the freelist: page"},
		{"freelist page says another id", s.changed(func(s store) { ne.PutUint64(s.page(s.m.freelist), 999) }),
			"says it is page 999"},
		{"freelist count past its page", s.changed(func(s store) {
			p := s.page(s.m.freelist)
			ne.PutUint16(p[10:], extendedCount)
			ne.PutUint64(p[pageHeaderSize:], 1<<40)
		}), "holds 1099511627776 ids"},
		{"freed page past the high-water mark", s.changed(func(s store) {
			ne.PutUint64(s.page(s.m.freelist)[pageHeaderSize:], hwm+5)
		}), "free page"},
		{"branch child past the high-water mark", s.changed(func(s store) {
			ne.PutUint64(element(s.page(s.big), 0)[8:], hwm+100)
		}), "outside pages"},
		{"branch child far outside the file", s.changed(func(s store) {
			ne.PutUint64(element(s.page(s.big), 0)[8:], 1<<40)
		}), "outside pages"},
		{"branch child is a meta page", s.changed(func(s store) { ne.PutUint64(element(s.page(s.big), 1)[8:], 1) }),
			"page 1 is outside pages 2"},
		{"branch points at itself", s.changed(func(s store) { ne.PutUint64(element(s.page(s.big), 0)[8:], s.big) }),
			"referenced twice"},
		{"branch with no elements", s.changed(func(s store) { ne.PutUint16(s.page(s.big)[10:], 0) }), "no elements"},
		{"branch key past its page", s.changed(func(s store) { ne.PutUint32(element(s.page(s.big), 2), 1<<31) }),
			"past the page's end"},
		{"leaf key past its page", s.changed(func(s store) {
			leaf := ne.Uint64(element(s.page(s.big), 0)[8:])
			ne.PutUint32(element(s.page(leaf), 3)[4:], 0xFFFFFF00)
		}), "past the page's end"},
		{"leaf value past its page", s.changed(func(s store) {
			leaf := ne.Uint64(element(s.page(s.big), 0)[8:])
			ne.PutUint32(element(s.page(leaf), 0)[12:], 1<<20)
		}), "past the page's end"},
		{"element count past the page", s.changed(func(s store) {
			ne.PutUint16(s.page(ne.Uint64(element(s.page(s.big), 0)[8:]))[10:], 0xFFFE)
		}), "do not fit"},
		{"page type scribbled", s.changed(func(s store) { xor(s.page(s.outer)[8:10]) }), "has type"},
		{"page header scribbled", s.changed(func(s store) { xor(s.page(s.large)[:pageHeaderSize]) }), "says it is page"},
		{"overflow past the high-water mark", s.changed(func(s store) { ne.PutUint32(s.page(s.large)[12:], 1<<30) }),
			"past the high-water mark"},
		{"bucket root past the high-water mark", s.changed(func(s store) {
			// The root bucket's leaf holds big, large and outer, in order.
			e := element(s.page(s.m.root), 0)
			v := e[ne.Uint32(e[4:])+ne.Uint32(e[8:]):]
			ne.PutUint64(v, hwm)
		}), `bucket "big": page`},
		{"inline bucket page scribbled", s.changed(func(s store) {
			e := element(s.page(s.outer), 0) // inner
			v := e[ne.Uint32(e[4:])+ne.Uint32(e[8:]):]
			ne.PutUint16(v[bucketHeader+10:], 500)
		}), `bucket "inner" (inline)`},
		{"inline bucket value too short", s.changed(func(s store) {
			ne.PutUint32(element(s.page(s.outer), 0)[12:], 8)
		}), "value of 8 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(bytes.NewReader(tc.data), int64(len(tc.data)))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check: %v; want it to pass", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check: %v; want an error saying %q", err, tc.want)
			case tc.want == "":
				if err := openAndWalk(t, tc.data); err != nil {
					t.Fatalf("Check passed it, bbolt: %v", err)
				}
			}
		})
	}
}

// openAndWalk opens data with bbolt and reads all of it, as a store that
// Check passed is read: bbolt's Tx.Check, then every key and value.
func openAndWalk(t *testing.T, data []byte) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // read all: Check's goroutine ends before the transaction
			if first == nil {
				first = err
			}
		}
		if first != nil {
			return first
		}
		var walk func(b *bolt.Bucket) error
		walk = func(b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if v == nil {
					return walk(b.Bucket(k))
				}
				return nil
			})
		}
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
}

// TestFile: a missing file passes (bbolt creates it), and a file another
// process holds open with bbolt is not read until its lock is free.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	if err := File(filepath.Join(dir, "missing.db"), time.Second); err != nil {
		t.Errorf("File(missing): %v; want nil", err)
	}
	path := filepath.Join(dir, "held.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := File(path, 100*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Errorf("File(held by bbolt): %v; want ErrLocked", err)
	}
	db.Close()
	if err := File(path, time.Second); err != nil {
		t.Errorf("File(released): %v; want nil", err)
	}
	if err := os.WriteFile(path, []byte("text"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := File(path, time.Second); err == nil || !strings.Contains(err.Error(), "boltcheck: neither meta page") {
		t.Errorf("File(text): %v; want it refused", err)
	}
}

// FuzzCheck: whatever damage Check passes, bbolt opens and reads without
// faulting (a fault kills the fuzzing process, which reports it). bbolt
// may still refuse the file or panic, as it does on damage it detects.
func FuzzCheck(f *testing.F) {
	s := newStore(f)
	f.Add(uint32(0), []byte{0})
	f.Add(uint32(s.big*s.ps+pageHeaderSize+8), []byte{0xff, 0xff, 0xff})
	f.Add(uint32(s.m.freelist*s.ps+10), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, off uint32, b []byte) {
		data := bytes.Clone(s.data)
		if int(off) >= len(data) {
			off %= uint32(len(data))
		}
		copy(data[off:], b)
		if Check(bytes.NewReader(data), int64(len(data))) != nil {
			return
		}
		defer func() { _ = recover() }()
		_ = openAndWalk(t, data)
	})
}
