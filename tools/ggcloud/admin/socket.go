package admin

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// SocketName is the admin socket's file name in the data directory.
const SocketName = "admin.sock"

// SocketPath is the admin socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Listen creates the admin socket of dataDir, mode 0600, replacing a
// stale one. The data directory must be private (mode 0700 or
// stricter): its permissions guard the socket. Call it while holding the
// store, so no other ggcloud can be serving the socket.
func Listen(dataDir string) (net.Listener, error) {
	info, err := os.Stat(dataDir)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("admin: data directory %s has mode %04o: others could reach the admin socket; want 0700 (chmod 700 %s)", dataDir, perm, dataDir)
	}
	path := SocketPath(dataDir)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin: socket path %s has %d bytes, unix sockets take at most %d: use a shorter data directory path", path, len(path), maxSocketPath)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("admin: remove stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}
