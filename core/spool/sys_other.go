//go:build !linux

package spool

import (
	"fmt"
	"os"
)

// datasync flushes f's data and size to stable storage.
func datasync(f *os.File) error { return f.Sync() }

// lockFile opens path+".lock"; other systems do not lock (ggcore runs on Linux).
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	return f, nil
}
