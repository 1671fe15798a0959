package functions

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ggcore/ggcore/core/config"
)

// cgroupRoot is where ggcore makes the functions' cgroups (cgroup v2).
const cgroupRoot = "/sys/fs/cgroup/ggcore-functions"

// Default access identity when neither the function's RunAs nor
// Options.DefaultRunAs names one and the system has no ggc_user/ggc_group:
// nobody/nogroup.
const (
	defaultUser  = "ggc_user"
	defaultGroup = "ggc_group"
	nobodyID     = 65534
)

// DefaultIdentity is the uid/gid of functions without RunAs when ggcore
// runs as root: v1's ggc_user and ggc_group from the system's user and
// group databases, each falling back to 65534 (nobody, nogroup). Never
// root.
func DefaultIdentity() *config.RunAs {
	ra := &config.RunAs{Uid: nobodyID, Gid: nobodyID}
	if u, err := user.Lookup(defaultUser); err == nil {
		if id, err := strconv.ParseInt(u.Uid, 10, 64); err == nil && id != 0 {
			ra.Uid = id
		}
		if id, err := strconv.ParseInt(u.Gid, 10, 64); err == nil && id != 0 {
			ra.Gid = id
		}
	}
	if g, err := user.LookupGroup(defaultGroup); err == nil {
		if id, err := strconv.ParseInt(g.Gid, 10, 64); err == nil && id != 0 {
			ra.Gid = id
		}
	}
	return ra
}

// identity is the uid/gid sp's processes run as when ggcore is root.
func (s *Supervisor) identity(sp Spec) config.RunAs {
	if sp.RunAs != nil {
		return *sp.RunAs
	}
	return *s.o.DefaultRunAs
}

// isolate sets up cmd's isolation for sp when ggcore runs as root: the
// RunAs (or default) uid/gid, with no supplementary groups; for a
// containerised function also new mount and PID namespaces and a cgroup
// with memory.max = MemorySize. It returns what undoes it.
func (s *Supervisor) isolate(cmd *exec.Cmd, sp Spec) func() {
	if os.Geteuid() != 0 {
		return func() {}
	}
	id := s.identity(sp)
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL,
		Credential: &syscall.Credential{Uid: uint32(id.Uid), Gid: uint32(id.Gid), Groups: []uint32{}}}
	cmd.SysProcAttr = attr
	if sp.IsolationMode == config.IsolationNoContainer {
		return func() {}
	}
	attr.Cloneflags = syscall.CLONE_NEWNS | syscall.CLONE_NEWPID
	if sp.MemorySizeKB <= 0 {
		return func() {}
	}
	dir, fd, err := memoryCgroup(sp)
	if err != nil {
		s.noCg.Do(func() {
			s.log.Warn("functions run without their MemorySize limit: no cgroup v2 memory controller", "error", err)
		})
		return func() {}
	}
	attr.UseCgroupFD, attr.CgroupFD = true, fd
	return func() {
		_ = syscall.Close(fd)
		_ = os.Remove(dir) // fails while processes remain; the next start reuses it
	}
}

// memoryCgroup makes (or reuses) the function's cgroup v2 directory with
// its memory limit and returns it opened for clone3.
func memoryCgroup(sp Spec) (string, int, error) {
	ctrl, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	if err != nil || !strings.Contains(string(ctrl), "memory") {
		return "", -1, &os.PathError{Op: "cgroup v2 memory controller", Path: "/sys/fs/cgroup", Err: syscall.ENOTSUP}
	}
	if err := os.MkdirAll(cgroupRoot, 0o755); err != nil {
		return "", -1, err
	}
	_ = os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+memory"), 0)
	_ = os.WriteFile(filepath.Join(cgroupRoot, "cgroup.subtree_control"), []byte("+memory"), 0)
	dir := filepath.Join(cgroupRoot, strings.NewReplacer(":", "_", "/", "_").Replace(sp.FunctionArn))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", -1, err
	}
	limit := strconv.FormatInt(sp.MemorySizeKB*1024, 10)
	if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(limit), 0); err != nil {
		return "", -1, err
	}
	fd, err := syscall.Open(dir, syscall.O_DIRECTORY|syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, err
	}
	return dir, fd, nil
}
