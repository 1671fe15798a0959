// Package pid1 holds what the image's two PID 1 programs, ggboot (the
// first stage) and gginit (the slot's init), both need: console lines
// stamped with the time since the kernel started, a halt that keeps the
// reason on the screen, the kernel command line, and the kernel's file
// systems.
package pid1

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Console writes one-line messages, each "[uptime] name: text", as the
// kernel's own console lines look.
type Console struct {
	Name string
	Out  io.Writer // nil means standard output
}

// Say writes one console line.
func (c Console) Say(format string, args ...any) {
	out := c.Out
	if out == nil {
		out = os.Stdout
	}
	fmt.Fprintf(out, "[%10.6f] %s: %s\n", Uptime(), c.Name, fmt.Sprintf(format, args...))
}

// Halt says why the boot cannot go on and waits for ever: PID 1 must not
// exit (the kernel would panic and hide the reason), and a restart loop
// would scroll it away.
func (c Console) Halt(format string, args ...any) {
	c.Say("STOPPED: "+format, args...)
	for {
		time.Sleep(time.Hour)
	}
}

// Uptime is the time since the kernel started, in seconds (0 if the clock
// cannot be read).
func Uptime() float64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// Cmdline returns the key=value words of the running kernel's command
// line (none if /proc is not mounted).
func Cmdline() map[string]string {
	data, _ := os.ReadFile("/proc/cmdline")
	return ParseCmdline(string(data))
}

// ParseCmdline returns the key=value words of a kernel command line; a
// later word wins over an earlier one with the same key.
func ParseCmdline(line string) map[string]string {
	m := make(map[string]string)
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// Setting returns args[key], or def when it is absent or empty.
func Setting(args map[string]string, key, def string) string {
	if v := args[key]; v != "" {
		return v
	}
	return def
}

// Mount is one file system to mount.
type Mount struct{ Source, Target, Type string }

// KernelFS are the kernel's file systems every PID 1 here needs.
var KernelFS = []Mount{
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"devtmpfs", "/dev", "devtmpfs"},
	{"tmpfs", "/run", "tmpfs"},
}

// MountAll mounts each of mounts (nosuid), making its directory first; one
// already mounted is fine.
func MountAll(mounts []Mount) error {
	for _, m := range mounts {
		if err := os.MkdirAll(m.Target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.Source, m.Target, m.Type, unix.MS_NOSUID, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Target, err)
		}
	}
	return nil
}
