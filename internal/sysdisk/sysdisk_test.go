package sysdisk

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestLayout(t *testing.T) {
	l := Layout{SlotSize: SlotSizeFor(10 << 20)}
	if l.SlotSize != 20<<20 {
		t.Fatalf("SlotSizeFor(10 MiB) = %d", l.SlotSize)
	}
	if SlotSizeFor(1) != 16<<20 {
		t.Fatalf("SlotSizeFor(1) = %d, want the 16 MiB minimum", SlotSizeFor(1))
	}
	dir := t.TempDir()
	relA, relB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(relA, []byte("release A"), 0o644)
	os.WriteFile(relB, []byte("release B"), 0o644)
	disk := filepath.Join(dir, "system.img")
	if err := Create(disk, l, map[string]string{"A": relA, "B": relB}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(disk)
	if int64(len(data)) != l.Size() {
		t.Fatalf("disk is %d bytes, want %d", len(data), l.Size())
	}
	for i, want := range [][2]int64{{StateOffset, StateSize}, {SlotAOffset, l.SlotSize}, {SlotAOffset + l.SlotSize, l.SlotSize}} {
		e := data[446+16*i:]
		if start, n := int64(binary.LittleEndian.Uint32(e[8:]))*512, int64(binary.LittleEndian.Uint32(e[12:]))*512; start != want[0] || n != want[1] {
			t.Errorf("partition %d: %d+%d, want %d+%d", i+1, start, n, want[0], want[1])
		}
	}
	if !bytes.HasPrefix(data[l.SlotOffset("A"):], []byte("release A")) || !bytes.HasPrefix(data[l.SlotOffset("B"):], []byte("release B")) {
		t.Fatal("a slot does not hold its release")
	}
	// A release larger than a slot is refused.
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 17<<20), 0o644)
	if err := Create(disk, Layout{SlotSize: 16 << 20}, map[string]string{"A": big}); err == nil {
		t.Fatal("a release larger than its slot was written")
	}
	// sfdisk, when installed, reads the same table.
	if sfdisk, err := exec.LookPath("sfdisk"); err == nil {
		out, err := exec.Command(sfdisk, "--dump", disk).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("start=        2048, size=        2048, type=da")) {
			t.Errorf("sfdisk --dump: %v\n%s", err, out)
		}
	}
}

// TestCPIO checks the archive with cpio(1) when it is installed, and its
// framing always.
func TestCPIO(t *testing.T) {
	var buf bytes.Buffer
	files := []File{{Path: "/init", Mode: 0o755, Data: []byte("#!ggboot")}, {Path: "etc/ggcore/release-keys/dev.pem", Mode: 0o644, Data: []byte("key")}}
	if err := WriteCPIO(&buf, files); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 || !bytes.HasPrefix(buf.Bytes(), []byte("070701")) || !bytes.Contains(buf.Bytes(), []byte("TRAILER!!!\x00")) {
		t.Fatalf("not a newc archive: %q", buf.Bytes())
	}
	// cpio(1) is not a dependency of the project: the image tests show the
	// kernel unpacks these archives; cpio checks the entries when present.
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(cpio, "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(dir, f.Path))
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, %v", f.Path, got, err)
		}
		if st, _ := os.Stat(filepath.Join(dir, f.Path)); st != nil && st.Mode().Perm() != f.Mode {
			t.Errorf("%s: mode %v, want %v", f.Path, st.Mode().Perm(), f.Mode)
		}
	}
}
