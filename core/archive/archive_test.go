package archive

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one member of a test archive: a file (body), a directory
// (dir) or a link (target), or a special tar type.
type entry struct {
	name, body, target string
	dir                bool
	typ                byte
	mode               int64
}

func tgz(t testing.TB, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		if e.mode != 0 {
			h.Mode = e.mode
		}
		switch {
		case e.typ != 0:
			h.Typeflag, h.Size = e.typ, 0
		case e.dir:
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		case e.target != "":
			h.Typeflag, h.Size, h.Linkname = tar.TypeSymlink, 0, e.target
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func zipOf(t testing.TB, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range es {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		body := e.body
		switch {
		case e.dir:
			h.Name = strings.TrimSuffix(e.name, "/") + "/"
			h.SetMode(fs.ModeDir | 0o755)
		case e.target != "":
			h.SetMode(fs.ModeSymlink | 0o777)
			body = e.target
		default:
			h.SetMode(fs.FileMode(max(e.mode, 0o644)))
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	zw.Close()
	return buf.Bytes()
}

// unpack writes data to a file and unpacks it into parent/out.
func unpack(t testing.TB, data []byte, lim Limits) (string, error) {
	t.Helper()
	parent := t.TempDir()
	src := filepath.Join(parent, "code.archive")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(parent, "out"), Unpack(src, filepath.Join(parent, "out"), lim)
}

func TestUnpack(t *testing.T) {
	good := []entry{
		{name: "index.js", body: "exports.handler = () => {}"},
		{name: "node_modules/", dir: true},
		{name: "node_modules/sdk/package.json", body: "{}"},
		{name: "bin/run", body: "#!/bin/sh", mode: 0o755},
		{name: "node_modules/.bin/sdk", target: "../sdk/package.json"},
	}
	many := make([]entry, 11)
	for i := range many {
		many[i] = entry{name: "f" + strings.Repeat("x", i), body: "1"}
	}
	for _, tc := range []struct {
		name string
		data func(testing.TB, ...entry) []byte
		es   []entry
		want error // nil: unpacked
	}{
		{"good zip", zipOf, good, nil},
		{"good tgz", tgz, good, nil},
		{"zip slip", zipOf, []entry{{name: "../evil.js", body: "x"}}, ErrUnsafe},
		{"tar slip inside the path", tgz, []entry{{name: "a/../../evil.js", body: "x"}}, ErrUnsafe},
		{"absolute path", tgz, []entry{{name: "/etc/evil", body: "x"}}, ErrUnsafe},
		{"absolute path zip", zipOf, []entry{{name: "/tmp/evil", body: "x"}}, ErrUnsafe},
		{"symlink escaping", tgz, []entry{{name: "a/l", target: "../../etc/passwd"}}, ErrUnsafe},
		{"absolute symlink", zipOf, []entry{{name: "l", target: "/etc/passwd"}}, ErrUnsafe},
		{"write through a symlink", tgz, []entry{{name: "d", dir: true}, {name: "l", target: "d"}, {name: "l/x", body: "x"}}, ErrUnsafe},
		{"link over a directory", tgz, []entry{{name: "d/x", body: "x"}, {name: "d", target: "."}}, ErrUnsafe},
		{"link inside a link", tgz, []entry{{name: "s", target: "."}, {name: "s/l", target: "../x"}}, ErrUnsafe},
		{"dangling symlink", tgz, []entry{{name: "l", target: "nothing"}}, ErrUnsafe},
		{"device file", tgz, []entry{{name: "dev", typ: tar.TypeChar}}, ErrUnsafe},
		{"hard link", tgz, []entry{{name: "h", typ: tar.TypeLink}}, ErrUnsafe},
		{"fifo", tgz, []entry{{name: "p", typ: tar.TypeFifo}}, ErrUnsafe},
		{"oversize", tgz, []entry{{name: "big", body: strings.Repeat("x", 2048)}}, ErrTooLarge},
		{"oversize zip", zipOf, []entry{{name: "a", body: strings.Repeat("x", 600)}, {name: "b", body: strings.Repeat("x", 600)}}, ErrTooLarge},
		{"too many files", zipOf, many, ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := unpack(t, tc.data(t, tc.es...), Limits{MaxBytes: 1024, MaxEntries: 10})
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("Unpack: %v; want %v", err, tc.want)
			}
			if err != nil {
				if _, serr := os.Stat(out); !errors.Is(serr, fs.ErrNotExist) {
					t.Errorf("refused archive left %s behind (%v)", out, serr)
				}
				return
			}
			b, err := os.ReadFile(filepath.Join(out, "node_modules", ".bin", "sdk"))
			if err != nil || string(b) != "{}" {
				t.Errorf("link through: %q, %v", b, err)
			}
			st, err := os.Stat(filepath.Join(out, "bin", "run"))
			if err != nil || st.Mode().Perm() != 0o755 {
				t.Errorf("bin/run: %v, %v; want mode 0755", st, err)
			}
		})
	}
}

func TestUnpackRefusesOtherFormats(t *testing.T) {
	if _, err := unpack(t, []byte("just text"), Limits{}); err == nil {
		t.Fatal("unpacked plain text")
	}
}

// FuzzUnpack: whatever the bytes, Unpack writes nothing outside its
// directory and leaves nothing behind when it refuses.
func FuzzUnpack(f *testing.F) {
	f.Add(tgz(f, entry{name: "a/b", body: "x"}, entry{name: "l", target: "a/b"}))
	f.Add(zipOf(f, entry{name: "a/b", body: "x"}, entry{name: "l", target: "a/b"}))
	f.Add(tgz(f, entry{name: "../x", body: "x"}))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		src := filepath.Join(parent, "code.archive")
		if err := os.WriteFile(src, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(parent, "out")
		err := Unpack(src, out, Limits{MaxBytes: 1 << 16, MaxEntries: 64})
		names, _ := os.ReadDir(parent)
		for _, n := range names {
			if n.Name() != "code.archive" && n.Name() != "out" {
				t.Fatalf("Unpack wrote %s outside its directory", n.Name())
			}
		}
		if err != nil {
			if _, serr := os.Lstat(out); !errors.Is(serr, fs.ErrNotExist) {
				t.Fatalf("refused (%v) but left %s", err, out)
			}
			return
		}
		root, _ := filepath.EvalSymlinks(out)
		filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				t.Fatalf("link %s resolves to nothing", p)
			}
			if rel, _ := filepath.Rel(root, real); strings.HasPrefix(rel, "..") {
				t.Fatalf("link %s escapes to %s", p, real)
			}
			return nil
		})
	})
}
