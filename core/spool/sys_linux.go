package spool

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// datasync flushes f's data and size to stable storage.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// lockFile opens and exclusively locks path+".lock", so that two Spools
// (in any processes) never share the spool file path.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("spool: %s is in use (locked through %s.lock)", path, path)
		}
		return nil, fmt.Errorf("spool: locking %s.lock: %w", path, err)
	}
	return f, nil
}
