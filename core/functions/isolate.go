package functions

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/ggcore/ggcore/core/config"
)

// cgroupRoot is where ggcore makes the functions' cgroups (cgroup v2).
const cgroupRoot = "/sys/fs/cgroup/ggcore-functions"

// isolate sets up cmd's isolation for sp when ggcore runs as root and the
// function is containerised: RunAs uid/gid, new mount and PID namespaces,
// a cgroup with memory.max = MemorySize. It returns what undoes it.
func (s *Supervisor) isolate(cmd *exec.Cmd, sp Spec) func() {
	if os.Geteuid() != 0 || sp.IsolationMode == config.IsolationNoContainer {
		return func() {}
	}
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if sp.RunAs != nil {
		attr.Credential = &syscall.Credential{Uid: uint32(sp.RunAs.Uid), Gid: uint32(sp.RunAs.Gid)}
	}
	cmd.SysProcAttr = attr
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
