// Package sysdisk lays out a ggcore system disk — an MBR with the slot
// state partition and the two slot partitions — and writes the small
// uncompressed initramfs archives (cpio "newc") the first stage boots from.
package sysdisk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Layout of a system disk, in bytes.
const (
	// StateOffset is where partition 1, the slot state, starts.
	StateOffset = 1 << 20
	// StateSize is the size of the slot state partition.
	StateSize = 1 << 20
	// SlotAOffset is where partition 2, slot A, starts.
	SlotAOffset = StateOffset + StateSize
	// align is the alignment of every partition.
	align = 1 << 20
	// partType is the MBR type of every partition: 0xda, "non-file-system data".
	partType = 0xda
)

// Layout describes a system disk with two slots of SlotSize bytes.
type Layout struct {
	SlotSize int64
}

// SlotOffset is where slot "A" or "B" starts.
func (l Layout) SlotOffset(s string) int64 {
	if s == "B" {
		return SlotAOffset + l.SlotSize
	}
	return SlotAOffset
}

// Size is the size of the whole disk.
func (l Layout) Size() int64 { return SlotAOffset + 2*l.SlotSize }

// SlotSizeFor returns a slot size for releases of up to n bytes: twice n
// (room for bigger updates), rounded up to a MiB, at least 16 MiB.
func SlotSizeFor(n int64) int64 {
	s := max(2*n, 16<<20)
	return (s + align - 1) / align * align
}

// MBR returns the first sector of the disk: a partition table with the
// state partition and the two slots.
func (l Layout) MBR() ([]byte, error) {
	if l.SlotSize <= 0 || l.SlotSize%align != 0 {
		return nil, fmt.Errorf("sysdisk: slot size %d is not a positive multiple of 1 MiB", l.SlotSize)
	}
	if l.Size()/512 > 1<<32-1 {
		return nil, errors.New("sysdisk: disk too large for an MBR")
	}
	b := make([]byte, 512)
	binary.LittleEndian.PutUint32(b[440:], 0x67676331) // disk signature "ggc1"
	parts := [][2]int64{{StateOffset, StateSize}, {l.SlotOffset("A"), l.SlotSize}, {l.SlotOffset("B"), l.SlotSize}}
	for i, p := range parts {
		e := b[446+16*i:]
		// CHS fields unused (LBA only): the conventional "beyond CHS" value.
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = partType
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:], uint32(p[0]/512))
		binary.LittleEndian.PutUint32(e[12:], uint32(p[1]/512))
	}
	b[510], b[511] = 0x55, 0xaa
	return b, nil
}

// Create writes a new (sparse) system disk at path: the MBR, an empty
// state partition (ggboot then boots slot A) and the releases in slots
// (name "A"/"B" → release file).
func Create(path string, l Layout, slots map[string]string) error {
	mbr, err := l.MBR()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("sysdisk: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(l.Size()); err != nil {
		return fmt.Errorf("sysdisk: %w", err)
	}
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return fmt.Errorf("sysdisk: %w", err)
	}
	for s, rel := range slots {
		if err := WriteSlot(f, l, s, rel); err != nil {
			return err
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sysdisk: %w", err)
	}
	return f.Close()
}

// WriteSlot copies the release file rel into slot s of the disk f.
func WriteSlot(f io.WriterAt, l Layout, s, rel string) error {
	if s != "A" && s != "B" {
		return fmt.Errorf("sysdisk: no slot %q", s)
	}
	data, err := os.ReadFile(rel)
	if err != nil {
		return fmt.Errorf("sysdisk: %w", err)
	}
	if int64(len(data)) > l.SlotSize {
		return fmt.Errorf("sysdisk: release %s (%d bytes) does not fit slot %s (%d bytes)", rel, len(data), s, l.SlotSize)
	}
	if _, err := f.WriteAt(data, l.SlotOffset(s)); err != nil {
		return fmt.Errorf("sysdisk: write slot %s: %w", s, err)
	}
	return nil
}

// File is one entry of an initramfs archive.
type File struct {
	Path string      // inside the archive, without a leading slash
	Mode os.FileMode // permission bits, and os.ModeCharDevice for a device node; directories are implied by paths
	Data []byte
	// Major and Minor number a character device (Mode has os.ModeCharDevice).
	Major, Minor uint32
}

// Console is the /dev/console node the kernel opens for init's standard
// input and output before init runs.
var Console = File{Path: "dev/console", Mode: os.ModeCharDevice | 0o600, Major: 5, Minor: 1}

// WriteCPIO writes files as a cpio "newc" archive, the format Linux
// unpacks as an initramfs, with the directories they need. Entries are in
// path order with fixed owners and times, so the same files give the same
// bytes.
func WriteCPIO(w io.Writer, files []File) error {
	dirs := map[string]bool{}
	var entries []File
	for _, f := range files {
		p := strings.Trim(f.Path, "/")
		for d := p; ; {
			i := strings.LastIndex(d, "/")
			if i < 0 {
				break
			}
			d = d[:i]
			if !dirs[d] {
				dirs[d] = true
				entries = append(entries, File{Path: d, Mode: os.ModeDir | 0o755})
			}
		}
		e := f
		e.Path = p
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	cw := &cpioWriter{w: w}
	for i, e := range entries {
		mode := uint32(0o100000) | uint32(e.Mode.Perm())
		switch {
		case e.Mode.IsDir():
			mode = 0o040000 | uint32(e.Mode.Perm())
		case e.Mode&os.ModeCharDevice != 0:
			mode = 0o020000 | uint32(e.Mode.Perm())
		}
		cw.entry(uint32(i+1), mode, e.Path, e.Data, e.Major, e.Minor)
	}
	cw.entry(0, 0, "TRAILER!!!", nil, 0, 0)
	return cw.err
}

type cpioWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	var n int
	n, c.err = c.w.Write(b)
	c.n += int64(n)
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) entry(ino, mode uint32, name string, data []byte, major, minor uint32) {
	nlink := uint32(1)
	if mode&0o040000 != 0 {
		nlink = 2
	}
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check.
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, major, minor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}
