// Package archive unpacks a function's code archive (zip, or tar
// compressed with gzip) into a new directory, refusing anything that
// could reach outside it: absolute paths, ".." components, hard links,
// device files and other special entries, and symbolic links that do not
// resolve to something inside the directory. The total size and the
// number of entries are bounded, whatever the archive declares.
package archive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits bound what Unpack writes.
type Limits struct {
	// MaxBytes bounds the total size of the files (default 512 MiB).
	MaxBytes int64
	// MaxEntries bounds the number of files, directories and links
	// (default 100000).
	MaxEntries int
}

// ErrUnsafe is an entry refused because it could reach outside the
// directory or is not a plain file, directory or link inside it.
var ErrUnsafe = errors.New("unsafe archive entry")

// ErrTooLarge is an archive that unpacks to more than the limits allow.
var ErrTooLarge = errors.New("archive exceeds the limits")

// Unpack writes the archive at src (zip or tar.gz, told by its first
// bytes) into dir, which must not exist yet. On error, dir is removed.
func Unpack(src, dir string, lim Limits) (err error) {
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = 512 << 20
	}
	if lim.MaxEntries <= 0 {
		lim.MaxEntries = 100000
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	f, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	u := &unpacker{dir: dir, lim: lim, links: map[string]string{}}
	switch {
	case n >= 4 && bytes.Equal(magic[:4], []byte("PK\x03\x04")), n >= 4 && bytes.Equal(magic[:4], []byte("PK\x05\x06")):
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		err = u.zip(f, st.Size())
		if err != nil {
			return err
		}
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		if err := u.tgz(f); err != nil {
			return err
		}
	default:
		return errors.New("archive: not a zip or tar.gz archive")
	}
	return u.finish()
}

// unpacker writes entries under dir; links are made last (name ->
// target), so that no entry is written through one.
type unpacker struct {
	dir     string
	lim     Limits
	bytes   int64
	entries int
	links   map[string]string
	order   []string
}

func (u *unpacker) zip(f *os.File, size int64) error {
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fmt.Errorf("archive: zip: %w", err)
	}
	for _, e := range zr.File {
		mode := e.Mode()
		switch {
		case mode.IsDir():
			if err := u.mkdir(e.Name); err != nil {
				return err
			}
		case mode&fs.ModeSymlink != 0:
			rc, err := e.Open()
			if err != nil {
				return fmt.Errorf("archive: %s: %w", e.Name, err)
			}
			target, err := io.ReadAll(io.LimitReader(rc, 4097))
			rc.Close()
			if err != nil {
				return fmt.Errorf("archive: %s: %w", e.Name, err)
			}
			if err := u.link(e.Name, string(target)); err != nil {
				return err
			}
		case mode.IsRegular():
			rc, err := e.Open()
			if err != nil {
				return fmt.Errorf("archive: %s: %w", e.Name, err)
			}
			err = u.file(e.Name, mode, rc)
			rc.Close()
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("archive: %s: %w: a %v is not a file, directory or link", e.Name, ErrUnsafe, mode.Type())
		}
	}
	return nil
}

func (u *unpacker) tgz(f *os.File) error {
	gz, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("archive: gzip: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("archive: tar: %w", err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = u.mkdir(h.Name)
		//lint:ignore SA1019 old tar writers still mark regular files with TypeRegA ('\x00')
		case tar.TypeReg, tar.TypeRegA:
			err = u.file(h.Name, fs.FileMode(h.Mode), tr)
		case tar.TypeSymlink:
			err = u.link(h.Name, h.Linkname)
		case tar.TypeXGlobalHeader:
		default:
			err = fmt.Errorf("archive: %s: %w: tar entry type %q is not a file, directory or symbolic link", h.Name, ErrUnsafe, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// clean returns name as a relative slash path inside the directory, or
// an error for a name that is absolute or climbs out.
func clean(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("archive: %q: %w: empty, NUL or backslash in the name", name, ErrUnsafe)
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("archive: %q: %w: absolute path", name, ErrUnsafe)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", fmt.Errorf("archive: %q: %w: \"..\" in the path", name, ErrUnsafe)
		}
	}
	p := path.Clean(name)
	if p == "." {
		return "", nil
	}
	return p, nil
}

func (u *unpacker) count(name string) error {
	u.entries++
	if u.entries > u.lim.MaxEntries {
		return fmt.Errorf("archive: %s: %w: more than %d entries", name, ErrTooLarge, u.lim.MaxEntries)
	}
	return nil
}

func (u *unpacker) mkdir(name string) error {
	p, err := clean(name)
	if err != nil || p == "" {
		return err
	}
	if err := u.count(name); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(u.dir, filepath.FromSlash(p)), 0o755); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

func (u *unpacker) file(name string, mode fs.FileMode, r io.Reader) error {
	p, err := clean(name)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("archive: %q: %w: a file with no name", name, ErrUnsafe)
	}
	if err := u.count(name); err != nil {
		return err
	}
	for d := p; d != "."; d = path.Dir(d) {
		if _, ok := u.links[d]; ok {
			return fmt.Errorf("archive: %s: %w: listed as a link too, or inside the link %s", name, ErrUnsafe, d)
		}
	}
	dst := filepath.Join(u.dir, filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	perm := fs.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|noFollow, perm)
	if err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	budget := u.lim.MaxBytes - u.bytes
	n, err := io.Copy(out, io.LimitReader(r, budget+1))
	u.bytes += n
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("archive: %s: %w", name, err)
	}
	if n > budget {
		return fmt.Errorf("archive: %s: %w: more than %d bytes unpacked", name, ErrTooLarge, u.lim.MaxBytes)
	}
	return nil
}

// link records a symbolic link, made by finish once every file is
// written. Its target must be relative and stay inside the directory.
func (u *unpacker) link(name, target string) error {
	p, err := clean(name)
	if err != nil {
		return err
	}
	if p == "" {
		return fmt.Errorf("archive: %q: %w: a link with no name", name, ErrUnsafe)
	}
	if err := u.count(name); err != nil {
		return err
	}
	if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) || len(target) > 4096 {
		return fmt.Errorf("archive: %s -> %q: %w: link target must be a relative path inside the code", name, target, ErrUnsafe)
	}
	if t := path.Join(path.Dir(p), target); t == ".." || strings.HasPrefix(t, "../") {
		return fmt.Errorf("archive: %s -> %q: %w: link points outside the code", name, target, ErrUnsafe)
	}
	if _, ok := u.links[p]; ok {
		return fmt.Errorf("archive: %s: %w: listed twice", name, ErrUnsafe)
	}
	if _, err := os.Lstat(filepath.Join(u.dir, filepath.FromSlash(p))); err == nil {
		return fmt.Errorf("archive: %s: %w: listed as a file or directory too", name, ErrUnsafe)
	}
	u.links[p] = target
	u.order = append(u.order, p)
	return nil
}

// finish makes the links, none inside another, then checks that each
// resolves to something inside the directory.
func (u *unpacker) finish() error {
	root, err := filepath.EvalSymlinks(u.dir)
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	for _, p := range u.order {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := u.links[d]; ok {
				return fmt.Errorf("archive: %s: %w: inside the link %s", p, ErrUnsafe, d)
			}
		}
		dst := filepath.Join(u.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
		if err := os.Symlink(u.links[p], dst); err != nil {
			return fmt.Errorf("archive: %s: %w", p, err)
		}
	}
	for _, p := range u.order {
		real, err := filepath.EvalSymlinks(filepath.Join(u.dir, filepath.FromSlash(p)))
		if err != nil {
			return fmt.Errorf("archive: %s -> %q: %w: the link resolves to nothing in the code", p, u.links[p], ErrUnsafe)
		}
		if rel, err := filepath.Rel(root, real); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("archive: %s -> %q: %w: link points outside the code", p, u.links[p], ErrUnsafe)
		}
	}
	return nil
}
