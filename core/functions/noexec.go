package functions

import (
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// RunnableCode returns a directory holding dir's code from which its
// programs may be executed: dir itself, unless dir's file system is
// mounted noexec (the firmware image mounts its data partition so); then
// a copy of dir under runRoot (a RAM file system such as /run, where
// execution is allowed) named after dir. A directory named by its
// content's SHA-256 (deployed code) is copied once; any other is copied
// afresh. The copy is made beside its final name and renamed into place.
func RunnableCode(dir, runRoot string) (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return "", fmt.Errorf("functions: code %s: %w", dir, err)
	}
	if st.Flags&unix.ST_NOEXEC == 0 {
		return dir, nil
	}
	name := filepath.Base(dir)
	dst := filepath.Join(runRoot, name)
	if isSHA256(name) {
		if _, err := os.Stat(dst); err == nil {
			return dst, nil
		}
	}
	if err := os.MkdirAll(runRoot, 0o755); err != nil {
		return "", fmt.Errorf("functions: copy code off a noexec file system: %w", err)
	}
	tmp, err := os.MkdirTemp(runRoot, ".copy-")
	if err != nil {
		return "", fmt.Errorf("functions: copy code off a noexec file system: %w", err)
	}
	if err := copyTree(dir, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("functions: copy code %s to %s: %w", dir, runRoot, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("functions: %w", err)
	}
	old := dst + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dst, old); err != nil && !os.IsNotExist(err) {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("functions: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("functions: %w", err)
	}
	os.RemoveAll(old)
	return dst, nil
}

// PruneRunnable removes the copies under runRoot that keep does not name
// (code no function uses any more).
func PruneRunnable(runRoot string, keep []string) {
	entries, err := os.ReadDir(runRoot)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(runRoot, e.Name())
		used := false
		for _, k := range keep {
			used = used || k == p
		}
		if !used {
			os.RemoveAll(p)
		}
	}
}

func isSHA256(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32
}

// copyTree copies the files, directories and symbolic links of src into
// the existing directory dst, keeping their permission bits.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, to)
		case info.Mode().IsRegular():
			return copyFile(p, to, info.Mode().Perm())
		}
		return nil // sockets, devices: not code
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
